"""The hospital's directory (LDAP or Active Directory) through ldap3: find a person, check
their password by binding as them, and read their groups.

pocprint binds with its own service account to search, then binds as the person to check the
password. An empty password is refused before any bind: LDAP treats a bind with a name and no
password as an anonymous bind that succeeds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from pocprint.hospital.errors import ConfigError, PeerError
from pocprint.hospital.secrets import read_secret, refuse_inline

ROLES = ("admin", "technician", "prescriber", "radiologist", "lab_manager", "auditor")
USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")


@dataclass(frozen=True)
class DirectoryConfig:
    url: str
    user_base: str
    user_filter: str  # with {username}
    group_base: str
    group_filter: str  # with {dn}
    roles: dict[str, tuple[str, ...]]  # group DN (lower case) -> pocprint roles
    bind_dn: str | None = None
    bind_password: str | None = field(default=None, repr=False)
    name_attribute: str = "displayName"
    timeout_s: float = 5.0

    @property
    def label(self) -> str:
        return f"directory {self.url}"


def directory_config(raw: dict | None, secrets_dir: Path) -> DirectoryConfig | None:
    """[directory] of config/pocprint.toml; None when the site signs in with local accounts."""
    if not raw or not raw.get("url"):
        return None
    refuse_inline("directory", raw, "bind_password")
    url = str(raw["url"])
    if not url.startswith(("ldap://", "ldaps://")):
        raise ConfigError("[directory] url must be an ldap:// or ldaps:// address")
    for key in ("user_base", "group_base"):
        if not raw.get(key):
            raise ConfigError(f"[directory] {key} is required (e.g. ou=people,dc=hospital,dc=org)")
    user_filter = str(raw.get("user_filter", "(uid={username})"))
    group_filter = str(raw.get("group_filter", "(member={dn})"))
    if "{username}" not in user_filter:
        raise ConfigError("[directory] user_filter must contain {username}")
    if "{dn}" not in group_filter:
        raise ConfigError("[directory] group_filter must contain {dn}")
    roles: dict[str, tuple[str, ...]] = {}
    for group, names in (raw.get("roles") or {}).items():
        names = [names] if isinstance(names, str) else list(names)
        if bad := [n for n in names if n not in ROLES]:
            raise ConfigError(
                f"[directory.roles] {group}: {', '.join(bad)} is not a role ({', '.join(ROLES)})"
            )
        roles[str(group).lower()] = tuple(names)
    if not roles:
        raise ConfigError("[directory.roles] maps at least one directory group to pocprint roles")
    return DirectoryConfig(
        url=url,
        user_base=str(raw["user_base"]),
        user_filter=user_filter,
        group_base=str(raw["group_base"]),
        group_filter=group_filter,
        roles=roles,
        bind_dn=raw.get("bind_dn") or None,
        bind_password=read_secret("directory", raw, "bind_password", secrets_dir),
        name_attribute=str(raw.get("name_attribute", "displayName")),
        timeout_s=float(raw.get("timeout_s", 5)),
    )


@dataclass(frozen=True)
class Person:
    dn: str
    username: str
    full_name: str
    groups: tuple[str, ...]  # group DNs, lower case

    def roles(self, config: DirectoryConfig) -> frozenset[str]:
        return frozenset(r for g in self.groups for r in config.roles.get(g, ()))


def _seconds(config: DirectoryConfig) -> int:
    return max(1, math.ceil(config.timeout_s))  # ldap3 packs socket timeouts as integers


def _server(config: DirectoryConfig) -> ldap3.Server:
    return ldap3.Server(config.url, connect_timeout=_seconds(config), get_info=ldap3.NONE)


def _connect(config: DirectoryConfig, user: str | None, password: str | None) -> ldap3.Connection:
    return ldap3.Connection(
        _server(config),
        user=user,
        password=password,
        receive_timeout=_seconds(config),
        raise_exceptions=False,
    )


def _unreachable(config: DirectoryConfig, exc: Exception) -> PeerError:
    return PeerError(
        f"the {config.label} does not answer ({type(exc).__name__}); local accounts can still "
        "sign in"
    )


def find_person(config: DirectoryConfig, username: str) -> Person | None:
    """The person with this user name and their groups, read with the service account."""
    if not USERNAME.match(username or ""):
        return None
    try:
        conn = _connect(config, config.bind_dn, config.bind_password)
        if not conn.bind():
            raise PeerError(
                f"the {config.label} refused pocprint's service account ({conn.result.get('description')})"
            )
        try:
            conn.search(
                config.user_base,
                config.user_filter.format(username=escape_filter_chars(username)),
                attributes=[config.name_attribute, "cn"],
                size_limit=2,
            )
            if len(conn.entries) != 1:
                return None
            entry = conn.entries[0]
            dn = entry.entry_dn
            names = entry.entry_attributes_as_dict
            full = (names.get(config.name_attribute) or names.get("cn") or [username])[0]
            conn.search(
                config.group_base,
                config.group_filter.format(dn=escape_filter_chars(dn)),
                attributes=[],
            )
            groups = tuple(sorted(e.entry_dn.lower() for e in conn.entries))
        finally:
            conn.unbind()
    except ldap_errors.LDAPException as exc:
        raise _unreachable(config, exc) from exc
    return Person(dn=dn, username=username, full_name=str(full), groups=groups)


def check_password(config: DirectoryConfig, dn: str, password: str) -> bool:
    """Bind as the person: True when the directory accepts the password."""
    if not password:
        return False  # an empty password would be an anonymous bind, which succeeds
    try:
        conn = _connect(config, dn, password)
        accepted = conn.bind()
        if not accepted and conn.result.get("result") not in (49, 53):  # wrong password, locked
            raise PeerError(
                f"the {config.label} could not check the password "
                f"({conn.result.get('description')})"
            )
        conn.unbind()
        return bool(accepted)
    except ldap_errors.LDAPException as exc:
        raise _unreachable(config, exc) from exc
