"""Shared start-up for the absl entry points: ``--help`` that exits 0 and lists every flag
(train's config fields too), user errors (bad flag or config value, missing file, unknown
token) as one-line messages, library logs quiet unless ``--verbosity`` is given, short log
prefixes, and JAX's persistent compilation cache (``--compile_cache``)."""

import dataclasses
import errno
import logging as py_logging
import os
import re
import sys

from absl import app, flags, logging

from folkrnn_jax.errors import InputError, UserError
from folkrnn_jax.generate import options as options_lib
from folkrnn_jax.generate import prefix as prefix_lib

HELP_ARGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")
COMPILE_CACHE_ENV = "FOLKRNN_COMPILE_CACHE"
CACHE_OFF = ("", "off", "none", "0", "false", "no")


def default_compile_cache() -> str:
    """``$FOLKRNN_COMPILE_CACHE`` if set, else ``$XDG_CACHE_HOME/folkrnn_jax/jax`` (by default
    ``~/.cache/folkrnn_jax/jax``)."""
    if COMPILE_CACHE_ENV in os.environ:
        return os.environ[COMPILE_CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "folkrnn_jax", "jax")


flags.DEFINE_string(
    "compile_cache", default_compile_cache(),
    f"Folder of JAX's persistent compilation cache, so that a second run, a resume or a sweep's "
    f"next run with the same shapes loads its compiled steps instead of compiling them again; "
    f"'off' turns it off. The default comes from ${COMPILE_CACHE_ENV} if set.",
)


def enable_compile_cache(path: str) -> str | None:
    """Point JAX's persistent compilation cache at ``path`` (created if missing); ``off`` (or
    empty) leaves it off. Returns the folder used, or None.

    Every compiled program that took at least a tenth of a second to compile is kept, keyed
    by the program, the JAX version and the machine, so a stale entry is never used.
    """
    if path.strip().lower() in CACHE_OFF:
        return None
    import jax  # the entry points' own imports pull it in anyway; here after flag parsing

    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return path
# Modules whose INFO lines are the tool's own (progress, what was written); everything else
# (orbax, jax, etils) shows only warnings and errors unless --verbosity is given.
OWN_MODULES = ("folkrnn_jax", "experiments")


class TokenListParser(flags.ArgumentParser):
    """v2 tokens separated by spaces; the comma-separated form where unambiguous (see
    ``folkrnn_jax.generate.prefix.parse_token_list``)."""

    def parse(self, argument):
        if isinstance(argument, (list, tuple)):
            return list(argument)
        try:
            return prefix_lib.parse_token_list(argument)
        except UserError as error:  # absl reports a ValueError as a bad flag value, in one line
            raise ValueError(error.message) from None

    def flag_type(self) -> str:
        return "v2 tokens"


def define_tokens(name: str, default: list[str], help_text: str) -> None:
    """A flag holding v2 tokens (``--mask_tokens="B, =A, |:"``): absl's ``DEFINE_list`` splits
    at every comma, so it cannot take tokens such as ``B,``."""
    flags.DEFINE(TokenListParser(), name, default, help_text, serializer=flags.ListSerializer(" "))


def setting_help(spec: dataclasses.Field) -> str:
    """A setting's help with its range or choices, as ``--help`` and the composer show it."""
    text = spec.metadata["help"]
    if spec.metadata["bounds"] is not None:
        text += f" Range {spec.metadata['bounds'].describe()}."
    if spec.metadata["choices"] is not None:
        text += f" One of {', '.join(spec.metadata['choices'])}."
    return text


def define_sampling_flags() -> None:
    """One flag per field of ``folkrnn_jax.generate.options.SamplingSettings``, with its
    default and its range in the help (``--constrain``/``--noconstrain`` for the switch)."""
    for spec in dataclasses.fields(options_lib.SamplingSettings):
        define = {"int": flags.DEFINE_integer, "float": flags.DEFINE_float,
                  "bool": flags.DEFINE_bool}.get(spec.type, flags.DEFINE_string)
        define(spec.name, spec.default, setting_help(spec))


def sampling_settings() -> options_lib.SamplingSettings:
    """The ``SamplingSettings`` the sampling flags hold, checked (a bad value is one line
    naming the flag)."""
    values = {spec.name: flags.FLAGS[spec.name].value for spec in dataclasses.fields(options_lib.SamplingSettings)}
    try:
        return options_lib.SamplingSettings(**values).check()
    except options_lib.FieldError as error:
        raise InputError(f"--{error.field}: {error.reason}") from None


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def note_new_folder(folder: str) -> None:
    """Print a note when ``folder`` (where a command is about to write) does not exist yet: the
    commands create a missing output folder, and say so, rather than refuse or create it
    silently."""
    if folder and not os.path.isdir(folder):
        print(f"note: creating the folder {folder}", file=sys.stderr, flush=True)


def _own_module(name: str) -> bool:
    return any(part in name for part in OWN_MODULES) or name == "__main__"


def _config_fields_help(argv: list[str]) -> str:
    """The fields of train's ``--config`` (the named file's, else ``experiments/configs/v2.py``)
    with their defaults, as ``--config.FIELD`` lines."""
    if "config" not in flags.FLAGS:
        return ""
    # --config=FILE or --config FILE, as absl reads both
    named = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    named += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    try:
        if named:
            import runpy  # the config file is a Python module with get_config()

            config = runpy.run_path(named[0])["get_config"]()
        else:
            from experiments.configs import v2

            config = v2.get_config()
    except Exception as error:  # help still prints the flags when the file cannot be loaded
        return f"\n(config fields not listed: {error})\n"
    source = named[0] if named else "experiments/configs/v2.py"
    lines = [f"\nConfig fields (override with --config.FIELD=VALUE; defaults of {source}"
             + ("" if named else ", as no --config was given") + "):"]
    lines += [f"  --config.{key}={value!r}" for key, value in sorted(config.items())]
    return "\n".join(lines) + "\n"


def help_text(argv: list[str]) -> str:
    """The module docstring of the entry point, its flags (also those defined by shared
    experiments modules) and, for train, the config fields."""
    main_module = sys.modules.get("__main__")
    parts = [(getattr(main_module, "__doc__", None) or "").strip(), "", "Flags:"]
    for module, module_flags in sorted(flags.FLAGS.flags_by_module_dict().items()):
        if not (_own_module(module) or module == sys.argv[0]):
            continue
        for flag in sorted(module_flags, key=lambda f: f.name):
            default = "" if flag.default is None else f" (default: {flag.default_as_str})"
            parts.append(f"  --{flag.name}: {flag.help}{default}")
    parts.append("  --verbosity=0: also show the INFO lines of libraries (orbax, jax)")
    return "\n".join(parts) + "\n" + _config_fields_help(argv)


def parse_flags(argv: list[str]) -> list[str]:
    """Parse ``argv`` into ``flags.FLAGS``; a bad flag, config field, config file or value
    ends the program with one line (exit 2) instead of a traceback."""
    if any(arg in HELP_ARGS for arg in argv[1:]):
        print(help_text(argv))
        sys.exit(0)
    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS and flags.FLAGS["config"].present:
            # ml_collections defers a config file's load error to the first use of the config.
            flags.FLAGS.config.keys()
        return rest
    except flags.Error as error:
        _fail(str(error))
    except Exception as error:  # config files are loaded and overridden while parsing
        _fail(f"bad --config: {_one_line(error)}")
    return argv


def _one_line(error: Exception) -> str:
    """A config error's message on one line: ml_collections wraps an unknown field in quoted
    ``repr`` text and a missing file in a multi-line report."""
    text = str(error).replace("\\n", "\n").replace("\\'", "'")
    field = re.search(r"'(\w+)'\s*Did you mean \"(\w+)\"", text)
    if field:
        return f"unknown config field {field.group(1)!r} (did you mean {field.group(2)!r}?)"
    if "Failed loading config file" in text:
        missing = re.search(r"No such file or directory: '([^']+)'", text)
        if missing:
            return f"config file {missing.group(1)} not found"
    bare = re.fullmatch(r"\W*(\w+)\W*", text)
    if bare and isinstance(error, (AttributeError, KeyError)):
        return f"unknown config field {bare.group(1)!r}"
    return " ".join(text.strip("'\"").split())


class _QuietLibraries(py_logging.Filter):
    """Keeps warnings and errors from everywhere and INFO lines only from this project."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        if record.levelno >= py_logging.WARNING:
            return True
        path = record.pathname.replace(os.sep, "/")
        return any(f"/{name}/" in path for name in OWN_MODULES)


class ShortFormatter(py_logging.Formatter):
    """``21:26:55 text`` for INFO lines, ``21:26:55 warning: text`` above, instead of absl's
    ``I1203 21:26:55.123456 140234 loop.py:160]``; a multi-line message keeps its lines."""

    def format(self, record: py_logging.LogRecord) -> str:
        text = super().format(record)
        stamp = self.formatTime(record, "%H:%M:%S")
        level = "" if record.levelno <= py_logging.INFO else f"{record.levelname.lower()}: "
        return "\n".join(f"{stamp} {level}{line}" for line in text.splitlines() or [""])


def quiet_libraries() -> None:
    """Hide the INFO lines of libraries (orbax writes hundreds per run) on the absl logger, and
    print the rest with short prefixes."""
    handler = logging.get_absl_handler()
    handler.addFilter(_QuietLibraries())  # jax logs to the root logger
    handler.setFormatter(ShortFormatter())


def run(main) -> None:
    """``app.run(main)``, printing bad input (a ``UserError``: missing file, unknown token,
    malformed data, bad flag value, missing tool) as one line naming the problem; any other
    exception keeps its traceback."""

    def guarded(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.INFO)
            quiet_libraries()
        try:
            enable_compile_cache(flags.FLAGS["compile_cache"].value)  # its default if never parsed
            return main(argv)
        except UserError as error:
            _fail(error.message)
        except OSError as error:
            # A folder named as a file, a full disk or a refused permission is the user's to
            # fix, not a bug: one line with the path and the system's reason.
            if not isinstance(error, (IsADirectoryError, NotADirectoryError, PermissionError)) and \
                    error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            where = f"{error.filename}: " if error.filename else ""
            _fail(f"{where}{error.strerror or error}")

    app.run(guarded, flags_parser=parse_flags)
