"""Users and groups, for administrators (the management API). No Flask here.

Users are the entries of the htpasswd file (``auth.htpasswd``), written as
``ociregistry user`` writes them (bcrypt at ``auth.bcrypt_cost``, one writer at
a time). Changing a password or deleting a user ends that user's web UI
sessions on every instance at once (auth/sessions.py); refresh tokens die with
the old password hash by themselves. Groups come from the configuration file
(``auth.groups``) and are read-only here: change them there.

Robot accounts (``robot$NAME``) are not users: see admin/robots.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from ociregistry.admin.errors import Conflict, InvalidRequest, NotConfigured, NotFound
from ociregistry.auth.htpasswd import (
    Htpasswd,
    HtpasswdError,
    NoSuchUser,
    UserExists,
    validate_user,
)
from ociregistry.auth.rules import AccessRules
from ociregistry.auth.sessions import UISessions


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...]  # from auth.groups
    admin: bool  # what the access rules say (an ``admin`` action for them or a group)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "groups": list(self.groups), "admin": self.admin}


@dataclass(frozen=True)
class GroupInfo:
    name: str
    members: tuple[str, ...]
    admin: bool  # a rule gives this group the admin action
    read_only: bool = True  # groups live in the configuration file

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "members": list(self.members), "admin": self.admin,
                "read_only": self.read_only}


@dataclass(frozen=True)
class PasswordChange:
    user: str
    sessions_ended: int  # web UI sessions revoked


class UserAdmin:
    """List, create, re-password and delete htpasswd users; list configured groups."""

    def __init__(self, htpasswd: Htpasswd | None, rules: AccessRules, sessions: UISessions | None,
                 bcrypt_cost: int = 12) -> None:
        self.htpasswd = htpasswd  # None: no auth.htpasswd configured
        self.rules = rules
        self.sessions = sessions  # None: the UI (and so its sessions) is off
        self.cost = bcrypt_cost

    def _file(self) -> Htpasswd:
        if self.htpasswd is None:
            raise NotConfigured("no htpasswd file: set auth.htpasswd to manage users")
        return self.htpasswd

    def _info(self, name: str) -> UserInfo:
        return UserInfo(name, tuple(sorted(self.rules.groups_of(name))), self.rules.is_admin(name))

    def list_users(self) -> list[UserInfo]:
        return [self._info(name) for name in self._file().users()]

    def get_user(self, name: str) -> UserInfo:
        if name not in self._file():
            raise NotFound(f"no such user {name!r}")
        return self._info(name)

    def list_groups(self) -> list[GroupInfo]:
        admin_groups = {g for rule in self.rules.rules if "admin" in rule.actions
                        for g in rule.groups}
        return [GroupInfo(name, tuple(sorted(members)), name in admin_groups)
                for name, members in sorted(self.rules.groups.items())]

    def create(self, name: str, password: str) -> UserInfo:
        users = self._file()
        try:
            validate_user(name)
            users.set_password(name, password, self.cost, create=True, update=False)
        except UserExists as exc:
            raise Conflict(str(exc)) from exc
        except HtpasswdError as exc:
            raise InvalidRequest(str(exc)) from exc
        return self._info(name)

    def set_password(self, name: str, password: str) -> PasswordChange:
        users = self._file()
        try:
            users.set_password(name, password, self.cost, create=False, update=True)
        except NoSuchUser as exc:
            raise NotFound(str(exc)) from exc
        except HtpasswdError as exc:
            raise InvalidRequest(str(exc)) from exc
        return PasswordChange(name, self._end_sessions(name))

    def delete(self, name: str) -> PasswordChange:
        users = self._file()
        try:
            users.remove(name)
        except NoSuchUser as exc:
            raise NotFound(str(exc)) from exc
        return PasswordChange(name, self._end_sessions(name))

    def _end_sessions(self, name: str) -> int:
        return self.sessions.end_user(name) if self.sessions is not None else 0
