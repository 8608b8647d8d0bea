"""A user's pod as KubeSpawner 7.0.0 builds it, from the hub's own loaded config.

`pod_manifest(rendered, "alice", workdir)` runs, in the hub venv and in the
same private mount namespace as hub.py's hub (the hub ConfigMap and Secret
laid out where z2jh mounts them, the hub container's env):

1. JupyterHub 5.5's own `JupyterHub.initialize()` with the chart's
   jupyterhub_config.py: config loaded by traitlets exactly as in the hub pod,
   the sqlite db made, allowed users, groups, roles and services loaded;
2. for each user, the steps `User.spawn()` takes before `Spawner.start()`
   (JupyterHub 5.5 user.py: a Server row, the server token with the scopes
   JupyterHub resolves for it, admin_access, the OAuth client, then the
   authenticator's pre_spawn_start, the auth state hook, the group overrides,
   the user options and the pre_spawn_hook), because `start()` itself first
   creates the home PVC through the Kubernetes API, which is not here;
3. then `KubeSpawner.get_pod_manifest()` — the V1Pod KubeSpawner would create
   — and z2jh's `modify_pod_hook` if the config sets one, as `_start()` does.

The V1Pod comes back as the plain dict the API would receive
(kubernetes_asyncio's `ApiClient.sanitize_for_serialization`).  It carries
the user's JUPYTERHUB_API_TOKEN for a throwaway hub db: fine to run, never
printed by these helpers.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

from tests.integration.runtime import hubenv
from tests.integration.runtime.hub import HUB_ETC, Hub, Rendered, remove_secrets

# Runs inside the hub venv; the result is the last line of stdout (the hub logs to stderr).
_SCRIPT = r'''
import asyncio, json, sys

from jupyterhub import orm, roles, scopes
from jupyterhub.app import JupyterHub
from jupyterhub.objects import Server
from jupyterhub.utils import maybe_future, url_escape_path, url_path_join
from kubernetes_asyncio.client import ApiClient

config_file, users = sys.argv[1], sys.argv[2:]
# A token the caller made in a running hub for the (single) user: the server's token is then
# one that hub knows, instead of one of this throwaway db.
given_token = sys.stdin.read().strip()


async def prepare_spawn(app, user):
    """User.spawn() of JupyterHub 5.5 up to spawner.start(), for the default server."""
    db, server_name = app.db, ""
    base_url = url_path_join(user.base_url, url_escape_path(server_name), "/")
    orm_server = orm.Server(base_url=base_url)
    db.add(orm_server)
    db.commit()
    spawner = user.get_spawner(server_name, replace_failed=True)
    spawner.server = Server(orm_server=orm_server)
    requested = spawner.server_token_scopes
    if callable(requested):
        requested = requested(spawner)
        if asyncio.iscoroutine(requested):
            requested = await requested
    if not requested:
        requested = orm.Role.find(db, "server").scopes
    requested = {s + f"={user.name}/{server_name}" if s.endswith("!server") else s for s in requested}
    if not {"users:activity!user", "users:activity", "inherit"} & requested:
        requested |= {"users:activity!user"}
    have = roles.roles_to_scopes(roles.get_roles_for(user.orm_user)) | {"inherit"}
    client = db.query(orm.OAuthClient).filter_by(identifier="jupyterhub").one()
    resolved, _ = scopes._resolve_requested_scopes(requested, have, user.orm_user, client, db)
    api_token = given_token or user.new_api_token(note=f"Server at {base_url}", scopes=resolved)
    spawner.user_options = spawner.orm_spawner.user_options or {}
    spawner.clear_state()
    spawner.api_token = api_token
    spawner.admin_access = user.settings.get("admin_access", False)
    provider = user.settings.get("oauth_provider")
    if provider:
        allowed = await spawner._get_oauth_client_allowed_scopes()
        spawner.orm_spawner.oauth_client = provider.add_client(
            spawner.oauth_client_id, api_token,
            url_path_join(user.url, url_escape_path(server_name), "oauth_callback"),
            allowed_scopes=allowed, description=f"Server at {base_url}")
    db.commit()
    # What User.spawn() then runs before spawner.start(), in its order: the authenticator's
    # and auth state hooks, group_overrides (per-course datasets), user options, pre_spawn_hook.
    if user.authenticator:
        await maybe_future(user.authenticator.pre_spawn_start(user, spawner))
    await spawner.run_auth_state_hook(await user.get_auth_state())
    await spawner.apply_group_overrides()
    await spawner._run_apply_user_options(spawner.user_options)
    await maybe_future(spawner.run_pre_spawn_hook())
    await spawner.load_user_options()  # KubeSpawner's start(): profile_list, before the manifest
    return spawner


async def main():
    app = JupyterHub()
    await app.initialize(["--config", config_file])
    pods = {}
    async with ApiClient() as api:
        for name in users:
            user = app.users[orm.User.find(app.db, name)]
            spawner = await prepare_spawn(app, user)
            pod = await spawner.get_pod_manifest()
            if spawner.modify_pod_hook:
                pod = spawner.modify_pod_hook(spawner, pod)
                if asyncio.iscoroutine(pod):
                    pod = await pod
            pods[name] = api.sanitize_for_serialization(pod)
    authenticator = app.authenticator
    loaded = {
        "admin_access": app.admin_access,
        "authenticator_class": type(authenticator).__module__ + "." + type(authenticator).__name__,
        "admin_users": sorted(authenticator.admin_users),
        "allowed_users": sorted(authenticator.allowed_users),
        "allow_existing_users": authenticator.allow_existing_users,
        "groups": {g.name: sorted(u.name for u in g.users) for g in app.db.query(orm.Group)},
        "services": sorted(s.name for s in app.db.query(orm.Service)),
        "roles": {r.name: {"scopes": sorted(r.scopes), "groups": sorted(g.name for g in r.groups),
                           "services": sorted(s.name for s in r.services)}
                  for r in app.db.query(orm.Role)},
    }
    sys.stdout.write("\n" + json.dumps({"pods": pods, "config": loaded}) + "\n")
    sys.stdout.flush()


asyncio.run(main())
'''
TIMEOUT = 600   # a cold import of the hub stack and a new sqlite db, on a loaded machine


def load(source: Rendered | Hub, users: list[str], workdir: Path | None = None, venv: Path | None = None,
         api_token: str = "") -> dict:
    """{"pods": {user: V1Pod dict}, "config": what the hub loaded (admins, groups, roles, ...)}.

    `source`: a rendered release, or a running Hub of one (its release, its venv and its
    Service ports, so JUPYTERHUB_API_URL names that hub).  `api_token` (one user only): a
    token of that user made in the running hub, used as the server's token."""
    if isinstance(source, Hub):
        global _runs
        _runs += 1
        hub = dataclasses.replace(source, workdir=workdir or source.workdir / f"spawn-{_runs}", processes={},
                                  venv=venv or source.venv)
    else:
        if workdir is None:
            raise ValueError("a rendered release needs a workdir")
        hub = Hub(workdir=workdir, venv=venv or hubenv.hub_venv(), rendered=source)
    if api_token and len(users) != 1:
        raise ValueError("api_token is one user's: ask for one pod at a time")
    command, env = hub.hub_command("python", "-c", _SCRIPT, f"{HUB_ETC}/jupyterhub_config.py", *users)
    try:
        # the token goes on stdin: never on a command line
        result = subprocess.run(command, cwd=hub.state, env=env, input=api_token, capture_output=True,
                                text=True, timeout=TIMEOUT)
    finally:
        remove_secrets(hub.workdir)
    if result.returncode != 0:
        raise AssertionError("loading the hub config and building pods failed:\n"
                             + "\n".join(result.stderr.splitlines()[-40:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


_runs = 0


def pod_manifest(source: Rendered | Hub, user: str, workdir: Path | None = None, venv: Path | None = None,
                 api_token: str = "") -> dict:
    """The V1Pod (as a plain dict) KubeSpawner makes for `user`'s default server.

    With a running Hub as `source`, pass `api_token` (e.g. Session.new_token() of that user)
    so the server's JUPYTERHUB_API_TOKEN is one that hub knows."""
    return load(source, [user], workdir, venv, api_token)["pods"][user]
