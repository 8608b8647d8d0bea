"""The classroom at run time, on real parts: the hub's own code loading the rendered release.

hubenv  a venv with exactly the hub image's pins, cached once per machine
ldap    Debian's slapd, private, with a test CA (StartTLS on 389, LDAPS on 636)
hub     the chain's packaged chart, `helm template`, z2jh's hub files laid out in a
        private mount namespace, the real jupyterhub and configurable-http-proxy
spawn   KubeSpawner's own get_pod_manifest() from the hub's loaded config
fixtures  the pytest fixtures over them (imported by tests/integration/conftest.py)
"""
