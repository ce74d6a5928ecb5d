"""``pieceworks key init|add|list|remove|passwd``: the passphrases of an encrypted store.

As restic's ``key`` command: a store is encrypted once, while empty, with
``key init``; every passphrase that opens it is a key file wrapping the same
master key (`pieceworks.common_algorithms.keys`), so passphrases are added,
changed and removed without re-encrypting anything. The last one cannot be
removed. Passphrases: ``--password-file`` / ``$PIECEWORKS_PASSWORD`` /
``$PIECEWORKS_PASSWORD_FILE`` / a prompt; new ones ``--new-password-file`` /
``$PIECEWORKS_NEW_PASSWORD`` / ``$PIECEWORKS_NEW_PASSWORD_FILE`` / a prompt
typed twice.

The arguments are declared here, beside what the commands do (STYLE.md,
"commands own their arguments"); what the commands import comes with them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pieceworks.cli.exit_codes import CliError, ExitCode
from pieceworks.cli.output import iso_time

if TYPE_CHECKING:
    from pieceworks.cli.context import Context
    from pieceworks.cli.options import CommandParser
    from pieceworks.protocols import IObjectStore

__all__ = ["add_arguments", "run_key_add", "run_key_init", "run_key_list", "run_key_passwd"]

_DESCRIPTION = (
    "Manage the passphrases of an encrypted store. `key init` encrypts an empty\n"
    "store: a random master key, kept in the store only wrapped under a key derived\n"
    "from the passphrase with scrypt; chunks and manifests are then sealed with\n"
    "AES-256-GCM. Several passphrases can open one store (`key add`); `key passwd`\n"
    "replaces the one given; the last one cannot be removed. Without the\n"
    "passphrase nothing of a backup can be read (see docs/format.md)."
)


def add_arguments(parser: CommandParser) -> None:
    """Declare the actions of ``key``: init, list, add, passwd, remove."""
    codes = (ExitCode.FAILED, ExitCode.NOT_FOUND, ExitCode.CORRUPT)
    parser.describe(_DESCRIPTION, codes)
    actions = parser.add_commands("key_action")
    actions.add(
        "init", "run_key_init", summary="encrypt an empty store",
        description="Encrypt the (empty) store with a new master key opened by the passphrase.",
        codes=codes,
    )  # fmt: skip
    actions.add(
        "list", "run_key_list", summary="list the store's keys",
        description="List the key files of the store: id, creation time, host, KDF parameters.",
        codes=codes,
    )  # fmt: skip
    for name, function, summary in (
        ("add", "run_key_add", "add a passphrase"),
        ("passwd", "run_key_passwd", "replace the passphrase given by a new one"),
    ):
        action = actions.add(
            name, function, summary=summary, codes=codes,
            description=f"{summary.capitalize()}, opening the store with the current one.",
        )  # fmt: skip
        action.add_argument(
            "--new-password-file",
            metavar="FILE",
            help="the new passphrase (else $PIECEWORKS_NEW_PASSWORD, or a prompt)",
        )
    remove = actions.add(
        "remove", "run_key_remove", summary="remove a key",
        description="Remove key KEY_ID (not the last one), opening the store first.",
        codes=codes,
    )  # fmt: skip
    remove.add_argument("key_id", metavar="KEY_ID")


def _password(ctx: Context, store_name: str, *, initial: bool = False) -> str:
    from pieceworks.cli.passwords import read_password  # noqa: PLC0415

    return read_password(ctx.out, ctx.env, store_name, ctx.password_file, initial=initial)


def _encrypted(ctx: Context) -> tuple[str, IObjectStore]:
    """The chosen store; `NotEncrypted` if it has no key, before a passphrase is asked."""
    from pieceworks.common_algorithms.keys import scan_keys  # noqa: PLC0415

    name, objects = ctx.raw_store()
    scan_keys(objects)  # a damaged key file does not stop adding or removing keys
    return name, objects


def run_key_init(args: argparse.Namespace, ctx: Context) -> int:
    """Encrypt the chosen (empty) store."""
    from pieceworks.common_algorithms.keys import init_keys  # noqa: PLC0415

    name, objects = ctx.raw_store(create=True)  # a new store is encrypted before its first backup
    key_id = init_keys(objects, _password(ctx, name, initial=True))
    ctx.out.data({"store": name, "key_id": key_id, "encrypted": True})
    ctx.out.result(f"store '{name}' is encrypted; key {key_id} opens it")
    return ExitCode.OK


def run_key_list(args: argparse.Namespace, ctx: Context) -> int:
    """List the key files (no passphrase needed: they show nothing secret).

    ``--json``: ``keys`` rows ``{key_id, created, host, kdf}``; a key file that
    cannot be read is a row ``{key_id, unreadable}`` (why), as ``list --json``
    gives an unreadable manifest, and the exit code is 4.
    """
    from pieceworks.common_algorithms.keys import scan_keys  # noqa: PLC0415

    name, objects = ctx.raw_store()
    keys, damaged = scan_keys(objects)
    rows = [k.to_dict() for k in keys]
    rows += [{"key_id": key_id, "unreadable": str(exc)} for key_id, exc in damaged]
    ctx.out.data({"store": name, "keys": rows})
    lines = [f"{'key_id':18}{'created':22}{'host':20}kdf"]
    lines += [f"{k.key_id:18}{iso_time(k.created):22}{k.host:20}{k.kdf}" for k in keys]
    lines += [f"{key_id:18}DAMAGED: {exc}" for key_id, exc in damaged]
    ctx.out.result("\n".join(lines))
    if damaged:  # listed, as list shows an unreadable manifest, then exit 4
        raise CliError(
            f"{len(damaged)} key file(s) cannot be read: {', '.join(k for k, _ in damaged)};"
            " the other keys still open the store (`pieceworks key remove KEY_ID` removes a"
            " damaged one)",
            ExitCode.CORRUPT,
            reference="corruption-error",
        )
    return ExitCode.OK


def _with_new_password(args: argparse.Namespace, ctx: Context, change: bool) -> int:
    """`key add` (`change` false) or `key passwd`: the current and a new passphrase."""
    from pieceworks.cli.passwords import read_new_password  # noqa: PLC0415
    from pieceworks.common_algorithms.keys import add_key, change_password  # noqa: PLC0415

    name, objects = _encrypted(ctx)
    password = _password(ctx, name)
    new = read_new_password(ctx.out, ctx.env, name, args.new_password_file)
    key_id = (change_password if change else add_key)(objects, password, new)
    ctx.out.data({"store": name, "key_id": key_id})
    ctx.out.result(
        f"passphrase changed: key {key_id} replaces the old one in store '{name}'"
        if change
        else f"key {key_id} added to store '{name}'"
    )
    return ExitCode.OK


def run_key_add(args: argparse.Namespace, ctx: Context) -> int:
    """Add a passphrase."""
    return _with_new_password(args, ctx, change=False)


def run_key_passwd(args: argparse.Namespace, ctx: Context) -> int:
    """Replace the passphrase given by a new one."""
    return _with_new_password(args, ctx, change=True)


def run_key_remove(args: argparse.Namespace, ctx: Context) -> int:
    """Remove a key file (not the last)."""
    from pieceworks.common_algorithms.keys import remove_key  # noqa: PLC0415

    name, objects = _encrypted(ctx)
    remove_key(objects, _password(ctx, name), args.key_id)
    # "removed" (always true) is deprecated: the exit code says whether the key was removed
    ctx.out.data({"store": name, "key_id": args.key_id, "removed": True})
    ctx.out.result(f"key {args.key_id} removed from store '{name}'")
    return ExitCode.OK
