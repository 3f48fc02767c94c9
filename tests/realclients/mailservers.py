"""Real mail servers on loopback for tests: Dovecot (IMAP, IMAPS) and aiosmtpd (SMTP+STARTTLS, SMTPS).

Surprises measured while writing this (Dovecot 2.3.19, aiosmtpd 1.4.6, trustme 1.2):
- Dovecot's auth process runs as the dovecot user: every directory above the passwd-file and the
  maildir must be o+x; mkdtemp makes 0700 dirs, which gives "Temporary authentication failure".
- Dovecot is run in the foreground (`dovecot -F -c CONF`) as our child: PID 1 in this sandbox does
  not reap orphans, so a daemonised master becomes a zombie that `kill(pid, 0)` still finds.
  It is still stopped by SIGTERM to the pid in BASE_DIR/master.pid (the same process).
- aiosmtpd advertises AUTH only after STARTTLS when auth_require_tls=True; an implicit-TLS (SMTPS)
  session never counts as TLS for that check, so the SMTPS server also needs auth_require_tls=False.
- Appending users to ONE passwd-file is not reliable: Dovecot stat()s a passwd-file at most once per
  second (passwd_file_sync: `last_sync_time == ioloop_time`), so a user appended in the same second
  as any earlier lookup is "unknown user" until the next second. Each user therefore gets its own
  passwd-file (`args = ... etc/passwd.d/%u`, one `user:{PLAIN}password` line): a missing file is
  dropped from Dovecot's table, so a new file is read on first use. auth_cache_size = 0 (no cache).
- Dovecot's anvil auth penalty doubles the delay after each failed login from 127.0.0.1 (2, 4, 8,
  15 s) and also delays later *successful* logins; login_trusted_networks did not lift it here.
  It is switched off (anvil-auth-penalty listener mode = 0) and auth_failure_delay = 0.
- aiosmtpd warns on every connection when auth_required=True with auth_require_tls=False, so AUTH is
  enforced in the handler's handle_MAIL (530) instead. It still logs "Session.login_data is
  deprecated" on every successful AUTH (aiosmtpd's own code; harmless).
- dovecot stop (SIGTERM) takes ~1 s: the master waits for its children before exiting.
- Delivery is dovecot-lda run as root: it looks the user up through BASE_DIR/auth-userdb and drops
  to the static userdb's uid. Maildir stores LF; IMAP serves CRLF, so SMTP (CRLF) bytes round-trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import itertools
import os
import pwd
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

DOVECOT = "/usr/sbin/dovecot"
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
DOMAIN = "lixiao.test"
HOST = "127.0.0.1"

_CONFIG = """\
# Standalone test config (no system !include).
protocols = imap
listen = {host}
base_dir = {root}/run
state_dir = {root}/state
instance_name = lixiao-test-{port_imap}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
debug_log_path = {root}/dovecot.log
auth_verbose = yes
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 100
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = 0
auth_failure_delay = 0
ssl = yes
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
mail_location = maildir:~/Maildir
postmaster_address = postmaster@{domain}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/etc/passwd.d/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port_imap}
  }}
  inet_listener imaps {{
    address = {host}
    port = {port_imaps}
    ssl = yes
  }}
}}
"""


def _free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 right now (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in socks]


def _wait_port(port: int, up: bool, timeout: float = 15.0) -> None:
    """Wait until the port accepts connections (up) or refuses them (not up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                accepting = True
        except OSError:
            accepting = False
        if accepting == up:
            return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} still {'closed' if up else 'open'} after {timeout}s")


def _missing_tools() -> str:
    if not Path(DOVECOT).exists() or not Path(DOVECOT_LDA).exists():
        return "dovecot not found (apt-get install dovecot-imapd)"
    try:
        pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError:
        return "users dovecot/dovenull missing (apt-get install dovecot-core)"
    try:
        import aiosmtpd.controller  # noqa: F401
        import trustme  # noqa: F401
    except ImportError as exc:
        return f"python package missing: {exc.name} (pip install aiosmtpd trustme)"
    if os.geteuid() != 0:
        return "running Dovecot with its own uid switching needs root"
    return ""


class _Handler:
    """aiosmtpd handler: known recipients only; each message goes to every RCPT's INBOX via dovecot-lda."""

    def __init__(self, servers: MailServers) -> None:
        self.servers = servers

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:  # noqa: N802
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:  # noqa: N802
        if address.lower() not in self.servers.users:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address.lower())
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        data = envelope.original_content or envelope.content
        loop = asyncio.get_running_loop()
        for rcpt in envelope.rcpt_tos:
            proc = await loop.run_in_executor(None, self.servers.deliver, envelope.mail_from or "", rcpt, data)
            if proc.returncode != 0:
                return f"451 4.3.0 delivery to {rcpt} failed: {proc.stderr.decode(errors='replace').strip()}"
        return "250 OK delivered"


@dataclass
class MailServers:
    """Running Dovecot + aiosmtpd on loopback, sharing one user table."""

    root: Path
    ca_file: Path
    imap_port: int
    imaps_port: int
    smtp_port: int
    smtps_port: int
    host: str = HOST
    users: dict[str, str] = field(default_factory=dict)
    _dovecot: subprocess.Popen[bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def conf(self) -> Path:
        """The Dovecot config file."""
        return self.root / "dovecot.conf"

    def passwd(self, address: str) -> Path:
        """The user's own passwd-file (one per user: see the note at the top)."""
        return self.root / "etc" / "passwd.d" / address

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context trusting only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def add_user(self, name: str, password: str) -> str:
        """Create a user on both servers; returns the address, which is also the login."""
        address = name.lower() if "@" in name else f"{name}@{DOMAIN}".lower()
        if any(c in address for c in ":/\n") or any(c in password for c in ":\n"):
            raise ValueError("addresses may not contain ':', '/' or newlines; passwords not ':' or newlines")
        with self._lock:
            self.users[address] = password
            path = self.passwd(address)
            tmp = path.with_name(f".{address}.tmp")
            tmp.write_text(f"{address}:{{PLAIN}}{password}\n", encoding="utf-8")
            tmp.chmod(0o644)
            tmp.replace(path)
        return address

    def deliver(self, sender: str, rcpt: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
        """Deliver raw bytes into rcpt's INBOX with dovecot-lda."""
        cmd = [DOVECOT_LDA, "-c", str(self.conf), "-d", rcpt, "-e"]
        if sender:
            cmd += ["-f", sender]
        return subprocess.run(cmd, input=data, capture_output=True, check=False, timeout=30)

    def send(self, sender: str, password: str, message: EmailMessage | bytes, to: list[str]) -> None:
        """Submit via SMTP with STARTTLS and AUTH, as a mail client would."""
        with smtplib.SMTP(self.host, self.smtp_port, timeout=30) as smtp:
            smtp.starttls(context=self.client_context())
            smtp.login(sender, password)
            if isinstance(message, bytes):
                smtp.sendmail(sender, to, message)
            else:
                smtp.send_message(message, from_addr=sender, to_addrs=to)

    @contextlib.contextmanager
    def imap(self, address: str, password: str) -> Iterator[imaplib.IMAP4_SSL]:
        """A logged-in IMAPS connection with INBOX examined (read-only)."""
        conn = imaplib.IMAP4_SSL(self.host, self.imaps_port, ssl_context=self.client_context(), timeout=30)
        try:
            conn.login(address, password)
            typ, _ = conn.select("INBOX", readonly=True)
            assert typ == "OK"
            yield conn
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    def _fetch(self, address: str, password: str, item: str) -> list[Any]:
        """UID-ordered FETCH responses of every INBOX message."""
        with self.imap(address, password) as conn:
            typ, data = conn.uid("SEARCH", "ALL")
            assert typ == "OK"
            uids = data[0].split() if data and data[0] else []
            out = []
            for uid in uids:
                typ, resp = conn.uid("FETCH", uid.decode(), item)
                assert typ == "OK" and resp and resp[0] is not None, resp
                out.append(resp)
            return out

    def inbox(self, address: str, password: str) -> list[bytes]:
        """Raw RFC 822 bytes of every INBOX message (BODY.PEEK[], flags unchanged)."""
        return [resp[0][1] for resp in self._fetch(address, password, "(BODY.PEEK[])")]

    def flags(self, address: str, password: str) -> list[set[str]]:
        """Flags and keywords of every INBOX message, in the same order as inbox()."""
        out = []
        for resp in self._fetch(address, password, "(FLAGS)"):
            flags = imaplib.ParseFlags(resp[0])
            out.append({f.decode() for f in flags})
        return out

    def start_imap(self) -> None:
        """Start Dovecot with the config and mail as they are; wait until both ports accept."""
        if self._dovecot is not None and self._dovecot.poll() is None:
            return
        err = (self.root / "dovecot.stderr").open("ab")
        try:
            self._dovecot = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)], stdout=err, stderr=err,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            err.close()
        try:
            for port in (self.imap_port, self.imaps_port):
                _wait_port(port, up=True)
        except TimeoutError:
            raise RuntimeError(f"dovecot did not start:\n{self.log_text()}") from None

    def stop_imap(self) -> None:
        """Stop Dovecot fully (SIGTERM to BASE_DIR/master.pid) and wait until it has exited."""
        proc, self._dovecot = self._dovecot, None
        if proc is None:
            return
        pid_file = self.root / "run" / "master.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        # Like systemd (KillMode=control-group): the master's children (imap, imap-login — they outlive the
        # master here and would keep serving open sessions) go too, so a client sees its connection drop.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for port in (self.imap_port, self.imaps_port):
            _wait_port(port, up=False)

    def restart_imap(self) -> None:
        """Stop Dovecot and start it again with the same config and mail."""
        self.stop_imap()
        self.start_imap()

    def log_text(self) -> str:
        """Dovecot's log (and its stderr), for debugging assertions."""
        parts = []
        for name in ("dovecot.stderr", "dovecot.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "".join(parts)


def _authenticator(servers: MailServers) -> Any:
    """An aiosmtpd authenticator checking LOGIN/PLAIN against the shared user table."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if mechanism not in ("LOGIN", "PLAIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", errors="replace").lower()
        ok = servers.users.get(login) == auth_data.password.decode("utf-8", errors="replace")
        return AuthResult(success=ok, handled=False)

    return check


def _write_tree(root: Path, ports: tuple[int, int], ca_file: Path) -> None:
    """Config, certificates, passwd-file and mail dir, all traversable by the dovecot user."""
    import trustme

    dove = pwd.getpwnam("dovecot")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(ca_file))
    cert = ca.issue_cert(HOST, "localhost")
    cert.private_key_pem.write_to_path(str(root / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(root / "server.pem"), append=True)
    for sub in ("run", "state", "etc", "etc/passwd.d", "mail"):
        (root / sub).mkdir(mode=0o755)
    os.chown(root / "mail", dove.pw_uid, dove.pw_gid)
    (root / "server.key").chmod(0o600)
    (root / "dovecot.conf").write_text(_CONFIG.format(
        host=HOST, root=root, domain=DOMAIN, uid=dove.pw_uid, gid=dove.pw_gid,
        port_imap=ports[0], port_imaps=ports[1]), encoding="utf-8")


def _server_tls(root: Path) -> ssl.SSLContext:
    """Server-side TLS context with the trustme leaf certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(root / "server.pem"), str(root / "server.key"))
    return ctx


@contextlib.contextmanager
def running_mail_servers() -> Iterator[MailServers]:
    """Dovecot (imap/imaps) and aiosmtpd (smtp+STARTTLS/smtps) on loopback, stopped on exit (the fixture below,
    and bench/mail.py)."""
    from aiosmtpd.controller import Controller

    root = Path(tempfile.mkdtemp(prefix="lixiao-mail-"))
    root.chmod(0o755)
    imap_port, imaps_port, smtp_port, smtps_port = _free_ports(4)
    servers = MailServers(root=root, ca_file=root / "ca.pem", imap_port=imap_port, imaps_port=imaps_port,
                          smtp_port=smtp_port, smtps_port=smtps_port)
    controllers: list[Any] = []
    try:
        _write_tree(root, (servers.imap_port, servers.imaps_port), servers.ca_file)
        servers.start_imap()
        handler, auth, tls = _Handler(servers), _authenticator(servers), _server_tls(root)
        # AUTH is required by _Handler.handle_MAIL: aiosmtpd's auth_required=True warns on every connection.
        common = {"hostname": HOST, "authenticator": auth, "auth_require_tls": False}
        controllers.append(Controller(handler, port=servers.smtp_port, tls_context=tls, require_starttls=False,
                                      **common))
        controllers.append(Controller(handler, port=servers.smtps_port, ssl_context=tls,
                                      server_hostname=HOST, **common))
        for c in controllers:
            c.start()
        yield servers
    finally:
        for c in controllers:
            with contextlib.suppress(Exception):
                c.stop()
        servers.stop_imap()
        shutil.rmtree(root, ignore_errors=True)


def missing_mail_tools() -> str:
    """What is missing to run the real mail servers ('' when nothing)."""
    return _missing_tools()


@pytest.fixture(scope="session")
def mail_servers() -> Iterator[MailServers]:
    """Dovecot (imap/imaps) and aiosmtpd (smtp+STARTTLS/smtps) on loopback; fails on CI when tools are missing."""
    missing = _missing_tools()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"real-client test needs mail servers on CI: {missing}")
        pytest.skip(missing)
    with running_mail_servers() as servers:
        yield servers


_serial = itertools.count(1)


@pytest.fixture
def mail_user(mail_servers: MailServers) -> tuple[str, str]:
    """A fresh (address, password) on both servers."""
    n = next(_serial)
    password = f"pw-{n}-{time.monotonic_ns()}"
    return mail_servers.add_user(f"user{os.getpid()}-{n}", password), password
