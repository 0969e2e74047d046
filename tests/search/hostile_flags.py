"""Hostile command lines: every command of `search` given numbers out of range (negative, zero,
NaN, inf, huge, words), addresses where nothing or something else listens, malformed and
unreachable database and tracking URLs (passwords in them), paths that are files, devices,
FIFOs, missing or unwritable, names with control characters, runs that do not exist.

Each case is (id, argv builder, expected part of the one-line message, ...); the builder gets a
Ctx: a valid space file, a finished search to point at, listeners to point at, and `out`, an
output folder that must stay absent.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hostile_cases import BASE

HUGE = "9" * 30
MANY_DIGITS = "7" * 5000  # past Python's int parsing limit (4,300 digits)
ESC = "\x1b[2J\x1b[31m"   # clears a terminal and paints it red when printed raw


@dataclass
class Ctx:
    inputs: Path           # files the case may write its inputs into
    out: Path              # an output folder that must never appear
    done: Path             # the output folder of a finished search (space "hostile")
    run_id: str            # its run
    silent_port: int       # accepts connections, never answers
    http_port: int         # an HTTP/1 server (not Ray, not MLflow); also a port in use

    @property
    def space(self) -> str:
        path = self.inputs / "ok.yaml"
        if not path.exists():
            path.write_text(BASE)
        return str(path)

    def file(self, name: str, text: str | bytes = "") -> str:
        path = self.inputs / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return str(path)

    def fifo(self, name: str = "pipe") -> str:
        path = self.inputs / name
        if not path.exists():
            os.mkfifo(path)
        return str(path)


Build = Callable[[Ctx], list[str]]


@dataclass(frozen=True)
class Flag:
    id: str
    argv: Build
    expect: str                    # part of the one line (the flag, the path or the rule)
    env: dict[str, str] = field(default_factory=dict)
    absent: str = ""               # must appear nowhere in the output (a password)


def _cases() -> list[Flag]:
    cases: list[Flag] = []

    def add(id_: str, argv: Build, expect: str, **kw) -> None:
        cases.append(Flag(id_, argv, expect, **kw))

    def run(*extra: str) -> Build:
        return lambda c: ["run", c.space, "--output", str(c.out), *extra]

    def on_done(command: str, *extra: str) -> Build:
        return lambda c: [command, "hostile", "--output", str(c.done), *extra]

    # -- the command line itself
    add("no_command", lambda c: [], "required: COMMAND")
    add("unknown_command", lambda c: ["explode"], "invalid choice")
    add("unknown_command_escape", lambda c: [ESC + "run"], "invalid choice")
    add("run_unknown_flag", run("--bogus"), "unrecognized arguments: --bogus")
    add("run_flag_without_value", run("--cpus"), "--cpus: expected one argument")
    add("run_switch_with_value", run("--new=yes"), "--new")
    add("run_no_file", lambda c: ["run"], "required: FILE")
    add("validate_no_file", lambda c: ["validate"], "required: FILE")
    add("resume_no_name", lambda c: ["resume", "--output", str(c.out)], "required: NAME")
    add("status_no_name", lambda c: ["status", "--output", str(c.out)], "required: NAME")

    # -- numbers: every number flag of every command
    for name, value in (("negative", "-1"), ("zero", "0"), ("huge", HUGE), ("word", "many"),
                        ("fraction", "1.5"), ("nan", "nan"), ("inf", "inf"), ("hex", "0x10"),
                        ("5000_digits", MANY_DIGITS)):
        add(f"run_cpus_{name}", run("--cpus", value), "--cpus")
    add("run_retries_negative", run("--retries", "-1"), "--retries: must be between 0")
    add("run_retries_huge", run("--retries", HUGE), "--retries: must be between 0")
    add("run_retries_word", run("--retries", "x"), "--retries: expected a whole number")
    add("run_warm_start_negative", run("--warm-start", "-2"), "--warm-start")
    add("run_warm_start_huge", run("--warm-start", HUGE), "--warm-start")
    add("run_warm_start_nan", run("--warm-start", "nan"), "--warm-start")
    add("resume_cpus_zero", lambda c: ["resume", str(c.done), "--cpus", "0"], "--cpus")
    add("sample_n_negative", lambda c: ["sample", c.space, "-n", "-5"], "-n: must be")
    add("sample_n_zero", lambda c: ["sample", c.space, "-n", "0"], "-n: must be")
    add("sample_n_huge", lambda c: ["sample", c.space, "-n", HUGE], "-n: must be")
    add("sample_n_inf", lambda c: ["sample", c.space, "-n", "inf"], "-n: expected")
    add("sample_seed_negative", lambda c: ["sample", c.space, "--seed", "-1"], "--seed")
    add("sample_seed_2_32", lambda c: ["sample", c.space, "--seed", str(2 ** 32)], "--seed")
    add("sample_seed_word", lambda c: ["sample", c.space, "--seed", "x"], "--seed")
    add("train_epochs_zero", lambda c: ["train", c.space, "--epochs", "0"], "--epochs")
    add("train_epochs_nan", lambda c: ["train", c.space, "--epochs", "nan"], "--epochs")
    add("status_lines_negative", on_done("status", "--lines", "-5"), "--lines")
    add("status_lines_word", on_done("status", "--lines", "all"), "--lines")
    add("best_trial_negative", on_done("best", "--trial", "-1"), "--trial")
    add("best_trial_unknown", on_done("best", "--trial", "99"), "--trial 99: not a completed")
    add("stages_cpus_zero", on_done("stages", "--cpus", "0"), "--cpus")
    add("ui_port_zero", on_done("ui", "--port", "0"), "--port")
    add("ui_port_huge", on_done("ui", "--port", "70000"), "--port")
    add("ui_port_word", on_done("ui", "--port", "http"), "--port")
    add("submit_retries_negative", lambda c: ["submit", c.space, "--retries", "-1"],
        "--retries")
    add("submit_warm_start_word", lambda c: ["submit", c.space, "--warm-start", "k"],
        "--warm-start")

    # -- local resources: more CPUs per trial than the local Ray will have
    add("run_cpus_below_trial", lambda c: ["run", c.file("cpu2.yaml", BASE + "resources: "
                                                          "{cpu: 2}\n"), "--output",
                                           str(c.out), "--cpus", "1"], "resources.cpu")

    # -- Ray addresses: nothing there, something else there, not an address
    add("run_address_closed_port", run("--address", "127.0.0.1:1"), "nothing listens there")
    add("run_address_port_out_of_range", run("--address", "127.0.0.1:99999"), "HOST:PORT")
    add("run_address_port_zero", run("--address", "127.0.0.1:0"), "HOST:PORT")
    add("run_address_no_port", run("--address", "127.0.0.1:"), "HOST:PORT")
    add("run_address_garbage", run("--address", "::::"), "HOST:PORT")
    add("run_address_unresolvable", run("--address", "no-such-host.invalid:6379"),
        "cannot resolve host")
    add("run_address_dashboard_url", run("--address", "http://127.0.0.1:8265"),
        "is for `search submit`")
    add("run_address_silent_listener", lambda c: run("--address",
                                                     f"127.0.0.1:{c.silent_port}")(c),
        "not a Ray cluster")
    add("run_address_http_server", lambda c: run("--address", f"127.0.0.1:{c.http_port}")(c),
        "not a Ray cluster")
    add("run_address_ray_client_closed", run("--address", "ray://127.0.0.1:1"),
        "nothing listens there")
    add("run_ray_address_env_closed", run(), "$RAY_ADDRESS",
        env={"RAY_ADDRESS": "127.0.0.1:1"})
    add("resume_address_closed", lambda c: ["resume", str(c.done), "--address", "127.0.0.1:1"],
        "--address")
    add("status_job_closed", lambda c: ["status", "raysubmit_x", "--address",
                                        "http://127.0.0.1:1"], "--address")
    add("submit_address_closed", lambda c: ["submit", c.space, "--address",
                                            "http://127.0.0.1:1", "--output", "/data/x"],
        "--address")

    # -- study database URLs
    add("run_storage_unknown_scheme", run("--storage", "foo://x/y"), "--storage")
    add("run_storage_no_scheme", run("--storage", "just-a-word"), "--storage")
    add("run_storage_sqlite_missing_dir", run("--storage", "sqlite:////no/such/dir/x.db"),
        "does not exist")
    add("run_storage_sqlite_memory", run("--storage", "sqlite:///:memory:"), "no database file")
    add("run_storage_sqlite_empty", run("--storage", "sqlite://"), "no database file")
    add("run_storage_sqlite_is_a_folder", lambda c: run("--storage",
                                                        f"sqlite:///{c.inputs}")(c),
        "--storage")
    add("run_storage_pg_closed_port", run("--storage", "postgresql://u@127.0.0.1:1/x"),
        "cannot open the study database")
    add("run_storage_pg_bad_host", run("--storage", "postgresql://u@[::1/x"), "--storage")
    add("run_storage_mysql_no_driver", run("--storage", "mysql://u@127.0.0.1:1/x"),
        "--storage")
    add("run_storage_password_hidden", run("--storage", "postgresql://u:hunter2@127.0.0.1:1/x"),
        "u:***@", absent="hunter2")
    add("run_storage_password_in_query",
        run("--storage", "postgresql://u@127.0.0.1:1/x?password=hunter2"), "--storage",
        absent="hunter2")
    add("run_storage_env_closed", run(), "--storage",
        env={"SEARCH_STORAGE": "postgresql://u:hunter2@127.0.0.1:1/x"}, absent="hunter2")
    add("status_storage_closed", on_done("status", "--storage",
                                         "postgresql://u:hunter2@127.0.0.1:1/x"),
        "cannot open the study database", absent="hunter2")
    add("best_storage_unknown_scheme", on_done("best", "--storage", "foo://x"), "--storage")
    add("submit_storage_password", lambda c: ["submit", c.space, "--storage",
                                              "postgresql://u:pw@h/d"], "holds a password")
    add("submit_tracking_password", lambda c: ["submit", c.space, "--tracking-uri",
                                               "http://u:pw@h:5000"], "holds a password")

    # -- password files
    add("run_password_file_missing", run("--storage-password-file", "/no/such/pw"),
        "does not exist")
    add("run_password_file_folder", lambda c: run("--storage-password-file", str(c.inputs))(c),
        "not a regular file")
    add("run_password_file_fifo", lambda c: run("--storage-password-file", c.fifo())(c),
        "not a regular file")
    add("run_password_file_dev_zero", run("--storage-password-file", "/dev/zero"),
        "not a regular file")
    add("run_password_file_empty", lambda c: run("--storage-password-file",
                                                 c.file("pw", ""))(c), "empty")
    add("run_password_file_huge", lambda c: run("--storage-password-file",
                                                c.file("pw", "x" * 10_000))(c), "larger than")

    # -- tracking URIs
    add("run_tracking_nonsense", run("--tracking-uri", "nonsense"), "--tracking-uri")
    add("run_tracking_unknown_scheme", run("--tracking-uri", "ftp://x"), "--tracking-uri")
    add("run_tracking_postgres_typo", run("--tracking-uri", "postgres://u@h/db"),
        "did you mean 'postgresql://'")
    add("run_tracking_sqlite_memory", run("--tracking-uri", "sqlite:///:memory:"),
        "names no database file")
    add("run_tracking_sqlite_missing_dir", run("--tracking-uri", "sqlite:////no/such/dir/m.db"),
        "does not exist")
    add("run_tracking_sqlite_is_a_folder", lambda c: run("--tracking-uri",
                                                         f"sqlite:///{c.inputs}")(c),
        "is not a file")
    add("run_tracking_server_closed", run("--tracking-uri", "http://127.0.0.1:1"),
        "unreachable")
    add("run_tracking_not_mlflow", lambda c: run("--tracking-uri",
                                                 f"http://127.0.0.1:{c.http_port}")(c),
        "is this an MLflow tracking server?")
    add("run_tracking_pg_closed_password", run("--tracking-uri",
                                               "postgresql://u:hunter2@127.0.0.1:1/m"),
        "cannot connect", absent="hunter2")
    add("run_tracking_env_nonsense", run(), "$MLFLOW_TRACKING_URI",
        env={"MLFLOW_TRACKING_URI": "nonsense"})
    add("ui_tracking_unknown_scheme", lambda c: ["ui", "--tracking-uri", "ftp://x"],
        "--tracking-uri")
    add("ui_tracking_memory", lambda c: ["ui", "--tracking-uri", "sqlite:///:memory:"],
        "no database file")
    add("stages_tracking_nonsense", on_done("stages", "--tracking-uri", "nonsense"),
        "--tracking-uri")

    # -- ui: where the server would listen
    add("ui_port_in_use", lambda c: on_done("ui", "--port", str(c.http_port))(c),
        "already in use")
    add("ui_host_not_this_machine", on_done("ui", "--host", "203.0.113.7"),
        "cannot listen there")
    add("ui_host_unresolvable", on_done("ui", "--host", "no-such-host.invalid"),
        "not an address of this machine")
    add("dashboard_port_word", on_done("dashboard", "--port", "http"), "--port")
    add("dashboard_host_unresolvable", on_done("dashboard", "--host", "no-such-host.invalid"),
        "not an address of this machine")

    # -- paths: files, folders, devices, FIFOs, places nothing can be written
    add("run_output_is_a_file", lambda c: run()(c)[:3] + [c.space], "is not a folder (a file)")
    add("run_output_under_a_file", lambda c: run()(c)[:3] + [c.space + "/out"],
        "is a file, not a folder")
    add("run_output_dev_zero", lambda c: run()(c)[:3] + ["/dev/zero"], "character device")
    add("run_output_under_dev_null", lambda c: run()(c)[:3] + ["/dev/null/out"],
        "character device")
    add("run_output_fifo", lambda c: run()(c)[:3] + [c.fifo()], "FIFO")
    add("run_output_read_only_fs", lambda c: run()(c)[:3] + ["/proc/sys/hostile"],
        "permission denied")
    add("run_output_in_proc", lambda c: run()(c)[:3] + ["/proc/hostile-out"], "cannot create")
    add("run_file_missing", lambda c: ["run", str(c.inputs / "nope.yaml"), "--output",
                                       str(c.out)], "no such space file")
    add("run_file_is_a_folder", lambda c: ["run", str(c.inputs), "--output", str(c.out)],
        "is a folder")
    add("run_file_dev_zero", lambda c: ["run", "/dev/zero", "--output", str(c.out)],
        "not a regular file")
    add("run_file_fifo", lambda c: ["run", c.fifo(), "--output", str(c.out)],
        "not a regular file")
    add("sample_file_fifo", lambda c: ["sample", c.fifo()], "not a regular file")
    add("train_config_fifo", lambda c: ["train", "--config", c.fifo()], "not a regular file")
    add("train_config_dev_zero", lambda c: ["train", "--config", "/dev/zero"],
        "not a regular file")
    add("train_config_missing", lambda c: ["train", "--config", "/no/such.yaml"],
        "does not exist")
    add("train_config_alias_bomb", lambda c: ["train", "--config", c.file("bomb.yaml", _BOMB)],
        "bomb.yaml:1: d[0][0][8][8]: more than 1000 alias expansions")
    add("train_config_not_utf8", lambda c: ["train", "--config", c.file("bin.yaml",
                                                                       b"\xff\xfe\x00x")],
        "not a text file")
    add("train_checkpoint_dir_dev_zero", lambda c: ["train", c.space, "--checkpoint-dir",
                                                    "/dev/zero"], "character device")
    add("train_checkpoint_dir_is_a_file", lambda c: ["train", c.space, "--checkpoint-dir",
                                                     c.space], "is not a folder (a file)")
    add("train_space_and_config", lambda c: ["train", c.space, "--config", c.space],
        "give either")
    add("train_set_without_equals", lambda c: ["train", c.space, "--set", "optimizer.lr"],
        "--set optimizer.lr: expected KEY=VALUE")
    add("best_output_dev_zero", lambda c: ["best", "x", "--output", "/dev/zero"],
        "no search found")
    add("sync_nothing_tracked", lambda c: ["sync", "--output", str(c.done)],
        "no tracked search here")

    # -- names: control characters, paths out of the tree, runs that do not exist
    add("status_name_newline", lambda c: ["status", "evil\nerror: forged line", "--output",
                                          str(c.out)], "evil\\nerror")
    add("best_name_escape", lambda c: ["best", ESC + "name", "--output", str(c.out)],
        "\\x1b[2J")
    add("status_name_dotdot", lambda c: ["status", "../../../etc"], "no search found")
    add("resume_unknown_name", lambda c: ["resume", "nosuchsearch", "--output", str(c.out)],
        "nosuchsearch: no search found")
    add("stages_unknown_name", lambda c: ["stages", "nosuchsearch", "--output", str(c.out)],
        "no search found")
    add("stages_unknown_run", on_done("stages", "--run", "run-19990101-000000-000000"),
        "run-19990101-000000-000000")
    add("resume_finished_run", lambda c: ["resume", str(c.done)], "nothing to resume")
    add("validate_name_newline", lambda c: ["validate", str(c.inputs / "a\nb.yaml")],
        "b.yaml: no such space file")
    add("run_fit_escape", run("--fit", ESC + "mod:fit"), "--fit")
    add("run_fit_nonsense", run("--fit", "no.such.module:fit"), "--fit no.such.module:fit")
    add("run_fit_not_callable", run("--fit", "os:sep"), "is not a function")
    add("run_fit_empty", run("--fit", ""), "--fit: empty")
    return cases


_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}]\n" for i in range(9))

CASES = _cases()
