"""A real LDAP server for the hub to log people in against: Debian's slapd, private.

Each instance has its own directory (config, database, test CA, keys, pid)
and its own loopback address (a random 127.x.y.z: all of 127.0.0.0/8 is the
loopback), where it listens on the standard ports, so the hub's config says
nothing about ports and ldapauthenticator's choice by `tls_strategy` is what
is tested: ldap:// on 389 (StartTLS) and ldaps:// on 636.  The hub reaches it
as `ldap.classroom.test` (its private /etc/hosts), the name in the server
certificate, which a CA made for this instance alone signs.

The directory refuses anonymous reads (a campus directory usually does), so the
search-user path really needs its search user.  Passwords are random per
instance and stored hashed ({SSHA}); none is ever on a command line.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
MODULE_PATH = "/usr/lib/ldap"
SCHEMA_DIR = "/etc/ldap/schema"
BASE_DN = "dc=classroom,dc=test"
PEOPLE = f"ou=people,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
SERVICES = f"ou=services,{BASE_DN}"
# slapd starts in well under a second; a loaded 2-core machine may take many.
START_TIMEOUT = 120


def ssha(password: str) -> str:
    """RFC 2307 {SSHA}, the form slapd checks a simple bind against."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass
class Person:
    uid: str
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    # An attribute a search can find the person by that is not their login name:
    # shows that the search-user path really searched (user_attribute) rather than
    # formed the DN from the login name.
    mail: str = ""

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE}"


HOST = "ldap.classroom.test"
LDAP_PORT, LDAPS_PORT = 389, 636


def loopback_address() -> str:
    """A random 127.x.y.z whose LDAP ports are free (127.0.0.1 itself is left to others)."""
    for _ in range(50):
        address = f"127.{secrets.randbelow(254) + 1}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
        try:
            for port in (LDAP_PORT, LDAPS_PORT):
                with socket.socket() as sock:
                    sock.bind((address, port))
        except OSError:
            continue
        return address
    raise RuntimeError("no free loopback address for slapd")


@dataclass
class LdapServer:
    root: Path
    address: str
    ca_file: Path
    people: dict[str, Person] = field(repr=False)
    search_user: Person = field(repr=False)
    groups: dict[str, list[str]] = field(repr=False)
    process: subprocess.Popen | None = None

    host = HOST                 # the name in the server certificate
    ldap_port = LDAP_PORT
    ldaps_port = LDAPS_PORT
    base_dn = BASE_DN
    people_dn = PEOPLE
    bind_dn_template = f"uid={{username}},{PEOPLE}"

    def group_dn(self, name: str) -> str:
        return f"cn={name},{GROUPS}"

    @property
    def search_user_dn(self) -> str:
        return f"cn={self.search_user.uid},{SERVICES}"

    def password(self, uid: str) -> str:
        return self.people[uid].password

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        log = self.root / "slapd.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def make_ca(directory: Path, name: str, hosts=(HOST,), ips=()) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) from the openssl CLI: a CA and one server certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    san = ",".join([f"DNS:{h}" for h in hosts] + [f"IP:{i}" for i in ips])
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, text=True)

    old_umask = os.umask(0o077)  # keys are born 0600
    try:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-sha256",
                "-subj", f"/CN={name} test CA", "-keyout", str(ca_key), "-out", str(ca_cert),
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", f"/CN={hosts[0]}",
                "-keyout", str(key), "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert))
    finally:
        os.umask(old_umask)
    ca_cert.chmod(0o644)
    cert.chmod(0o644)
    return ca_cert, cert, key


def _slapd_conf(root: Path, cert: Path, key: Path, ca: Path, root_pw_hash: str) -> str:
    schemas = "\n".join(f"include {SCHEMA_DIR}/{name}.schema"
                        for name in ("core", "cosine", "inetorgperson", "nis"))
    return f"""{schemas}
modulepath {MODULE_PATH}
moduleload back_mdb
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
# No plain binds on the StartTLS port: a client that skips StartTLS is refused.
security simple_bind=128
disallow bind_anon

database mdb
maxsize 104857600
suffix "{BASE_DN}"
rootdn "cn=admin,{BASE_DN}"
rootpw {root_pw_hash}
directory {root}/db
# People bind as themselves; only authenticated users (the search user) read the tree.
access to attrs=userPassword by anonymous auth by self read by * none
access to * by users read by anonymous auth by * none
"""


def _seed_ldif(people: dict[str, Person], search_user: Person, groups: dict[str, list[str]]) -> str:
    entries = [
        f"dn: {BASE_DN}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n"
        "o: Classroom test\ndc: classroom",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: {SERVICES}\nobjectClass: organizationalUnit\nou: services",
        f"dn: cn={search_user.uid},{SERVICES}\nobjectClass: organizationalRole\n"
        f"objectClass: simpleSecurityObject\ncn: {search_user.uid}\nuserPassword: {ssha(search_user.password)}",
    ]
    for number, person in enumerate(people.values()):
        entries.append(
            f"dn: {person.dn}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"uid: {person.uid}\ncn: {person.uid}\nsn: {person.uid}\n"
            f"mail: {person.mail or person.uid + '@classroom.test'}\n"
            f"uidNumber: {10000 + number}\ngidNumber: 100\nhomeDirectory: /home/{person.uid}\n"
            f"userPassword: {ssha(person.password)}")
    for name, members in groups.items():
        lines = [f"dn: cn={name},{GROUPS}", "objectClass: groupOfNames", f"cn: {name}"]
        lines += [f"member: {people[m].dn}" for m in members]
        entries.append("\n".join(lines))
    return "\n\n".join(entries) + "\n"


def start_ldap(root: Path, uids: dict[str, list[str]], mails: dict[str, str] | None = None,
               address: str = "") -> LdapServer:
    """slapd seeded with people (uids: group name -> member uids; every member is a person),
    on ADDRESS (default: a loopback address of its own; the real node's pods reach the
    pod network's gateway instead).

    The caller stops it (LdapServer.stop); the directory is the caller's to remove.
    """
    for tool in (SLAPD, SLAPADD, shutil.which("openssl")):
        if not tool or not Path(tool).exists():
            raise RuntimeError(f"{tool or 'openssl'} is missing: scripts/dev-env installs slapd, ldap-utils "
                               "and openssl (apt)")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    address = address or loopback_address()
    ca, cert, key = make_ca(root / "tls", "classroom-ldap", hosts=(HOST,), ips=(address,))
    names = sorted({uid for members in uids.values() for uid in members})
    people = {uid: Person(uid, mail=(mails or {}).get(uid, "")) for uid in names}
    search_user = Person("hub-search")
    (root / "db").mkdir(mode=0o700)
    conf = root / "slapd.conf"
    conf.write_text(_slapd_conf(root, cert, key, ca, ssha(secrets.token_urlsafe(16))))
    conf.chmod(0o600)
    seed = root / "seed.ldif"
    seed.write_text(_seed_ldif(people, search_user, uids))
    seed.chmod(0o600)
    subprocess.run([SLAPADD, "-f", str(conf), "-l", str(seed)], check=True, capture_output=True, text=True)
    seed.unlink()

    server = LdapServer(root=root, address=address, ca_file=ca, people=people, search_user=search_user,
                        groups=uids)
    urls = f"ldap://{address}:{LDAP_PORT}/ ldaps://{address}:{LDAPS_PORT}/"
    log = open(root / "slapd.log", "wb")
    # -d: stay in the foreground (so it is this fixture's child and dies with it); level
    # "stats" logs each bind, which is what a failing login test wants to see.
    server.process = subprocess.Popen([SLAPD, "-f", str(conf), "-h", urls, "-d", "stats"],
                                      stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        _wait_listening(server)
    except Exception:
        server.stop()
        raise
    return server


def _wait_listening(server: LdapServer):
    deadline = time.monotonic() + START_TIMEOUT
    pending = {server.ldap_port, server.ldaps_port}
    while pending:
        if server.process.poll() is not None:
            raise RuntimeError(f"slapd exited {server.process.returncode}:\n{server.log_tail()}")
        for port in sorted(pending):
            try:
                socket.create_connection((server.address, port), timeout=1).close()
                pending.discard(port)
            except OSError:
                pass
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"slapd is not listening on {sorted(pending)} after {START_TIMEOUT}s:\n"
                                   f"{server.log_tail()}")
            time.sleep(0.2)
