"""Kailash Gateway Python worker: runs PythonCodeNode and DataTransformer code in a sandbox.

The gateway starts this script as `python3 -I -B -c <script>` and talks to it over the
child's stdin/stdout: every message is a frame, a 4-byte big-endian length then that many
bytes of UTF-8 JSON. The first frame is the configuration; the worker answers
{"ready": true}, then serves one request at a time, answering each with exactly one frame.
EOF on stdin means the gateway is gone: the worker exits.

Layers, outermost first (the gateway adds a wall-clock kill and a process-group kill):
  1. rlimits applied to this process at start (address space, file size, processes,
     open files) and a CPU-time limit re-armed before each run;
  2. an audit hook (PEP 578), installed before any user code and never removed, that refuses
     processes, sockets, ctypes, pickle loading, gc introspection, frame objects and every
     file operation outside the data directories (reads of the Python installation excepted);
  3. user code is compiled from a checked AST: no names starting with `__`, no attributes
     starting with `_` (a few namedtuple methods excepted), no frame/code attributes, no
     string-evaluating entry points (`eval`, `query`, ...), no relative or star imports;
     attribute writes go through a check that refuses modules and classes;
  4. restricted builtins: no eval/exec/compile/globals/locals/vars/input/breakpoint;
     `__import__` checks an allowlist by top-level name and hands out read-only module
     views; `open` resolves the real path and permits only the data directories;
     getattr/setattr/delattr/hasattr refuse private names.
"""

import ast
import datetime
import decimal
import functools
import json
import math
import os
import resource
import sys
import types

PROTOCOL_IN = os.dup(0)
PROTOCOL_OUT = os.dup(1)
# Library code writing to fd 0/1 directly must not touch the protocol: stdin reads nothing,
# stdout goes where stderr goes (the gateway keeps a bounded tail of it for diagnostics).
_devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(_devnull, 0)
os.close(_devnull)
os.dup2(2, 1)


def read_exact(n):
    chunks, left = [], n
    while left:
        chunk = os.read(PROTOCOL_IN, left)
        if not chunk:
            os._exit(0)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame():
    size = int.from_bytes(read_exact(4), "big")
    return json.loads(read_exact(size))


def write_frame(payload):
    data = len(payload).to_bytes(4, "big") + payload
    view = memoryview(data)
    while view:
        view = view[os.write(PROTOCOL_OUT, view):]


def send(obj):
    write_frame(json.dumps(obj, separators=(",", ":")).encode())


CONFIG = read_frame()
ALLOWED = frozenset(CONFIG["allowed_imports"])
DENIED = frozenset(CONFIG["denied_imports"])
DATA_ROOTS = tuple(os.path.realpath(d) for d in CONFIG["data_dirs"])
MAX_OUTPUT = CONFIG["max_output_bytes"]
MAX_PRINT = CONFIG["max_print_bytes"]
CPU_SECONDS = CONFIG["cpu_seconds"]
READ_ROOTS = tuple(
    {
        os.path.realpath(p)
        for p in [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
        + [p for p in sys.path if p]
        + ["/usr/share/zoneinfo"]
    }
)
# Isolated mode keeps the working directory (a data directory) off the import path, but an
# older interpreter may not: a planted `pandas.py` must never shadow the real one.
sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) in READ_ROOTS]


def apply_rlimits():
    memory = CONFIG["memory_bytes"]
    for limit, value in [
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_FSIZE, memory),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, 64),
        # Not enforced for root; for any other user no fork (nor thread) can succeed.
        (resource.RLIMIT_NPROC, 0),
    ]:
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            pass


def arm_cpu_limit():
    """RLIMIT_CPU counts the process's whole life, so each run gets CPU_SECONDS more."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (used + CPU_SECONDS, resource.RLIM_INFINITY))


def inside(path, roots):
    return any(path == root or path.startswith(root + os.sep) for root in roots)


WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def install_audit_hook():
    denied_prefixes = (
        "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
        "os.forkpty", "os.kill", "os.killpg", "os.chdir", "os.setuid", "os.setgid",
        "pty.", "socket.", "ctypes.", "sqlite3.", "urllib.", "http.client.", "ftplib.",
        "smtplib.", "poplib.", "imaplib.", "nntplib.", "telnetlib.", "webbrowser.",
        "gc.get_", "sys.settrace", "sys.setprofile", "sys._current_frames",
        "sys.addaudithook", "code.__new__", "function.__new__", "pickle.find_class",
        "mmap.", "fcntl.", "resource.prlimit", "shutil.",
    )
    # tb_frame stays readable: the worker walks tracebacks to name the failing line (user
    # code cannot spell it: the checker refuses the attribute).
    frame_attributes = frozenset(["gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code"])
    # One path argument, judged like a write: must lie inside a data directory.
    data_only = frozenset(
        ["os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.truncate", "os.utime",
         "os.symlink", "os.link", "os.chmod", "os.chown", "os.chflags", "os.setxattr",
         "os.removexattr"]
    )
    data_roots, read_roots = DATA_ROOTS, READ_ROOTS

    def refuse(event, detail=""):
        raise PermissionError("sandbox: %s is not allowed%s" % (event, detail))

    def check_path(event, path, write):
        if isinstance(path, int) or path is None:
            refuse(event, " on a file descriptor")
        real = os.path.realpath(os.fsdecode(path))
        if inside(real, data_roots) or (not write and inside(real, read_roots)):
            return
        refuse(event, " outside the data directories: %s" % os.fsdecode(path))

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            write = bool(set(mode or "") & set("wax+")) or bool((flags or 0) & WRITE_FLAGS)
            check_path(event, path, write)
        elif event in ("os.listdir", "os.scandir"):
            check_path(event, args[0] if args[0] is not None else ".", False)
        elif event in data_only:
            check_path(event, args[0], True)
        elif event == "object.__getattr__":
            if args[1] in frame_attributes:
                refuse("access to frame and code objects")
        elif event.startswith(denied_prefixes) and event != "ctypes.dlopen":
            # numpy imports ctypes, whose import loads libpython; every use of it
            # (symbol lookup, calls, raw memory) stays refused.
            refuse(event)

    sys.addaudithook(hook)


class OutputLimit(Exception):
    pass


class Capture:
    """sys.stdout/sys.stderr of a run: kept up to MAX_PRINT bytes, then the run fails."""

    def __init__(self):
        self.parts, self.size = [], 0

    def write(self, text):
        text = str(text)
        self.size += len(text)
        if self.size > MAX_PRINT:
            raise OutputLimit("the code printed more than %d bytes" % MAX_PRINT)
        self.parts.append(text)
        return len(text)

    def flush(self):
        pass

    def text(self):
        return "".join(self.parts)


# ------------------------------------------------------------------ restricted execution

class SandboxError(Exception):
    pass


PUBLIC_UNDERSCORE = frozenset(["_asdict", "_replace", "_fields", "_make", "_field_defaults"])
BLOCKED_ATTRIBUTES = frozenset(
    [
        # frames, code and introspection
        "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "f_trace", "gi_frame",
        "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
        "tb_frame", "tb_next", "co_code", "mro",
        # entry points that evaluate strings or unpickle outside our checks
        "eval", "query", "read_pickle", "get_type_hints", "get_field", "format_field",
        "make_dataclass", "attrgetter", "methodcaller",
    ]
)


def check_attribute(name):
    if not isinstance(name, str):
        raise TypeError("attribute name must be a string")
    if (name.startswith("_") and name not in PUBLIC_UNDERSCORE) or name in BLOCKED_ATTRIBUTES:
        raise SandboxError("access to attribute '%s' is not allowed" % name)


class ModuleView:
    """A read-only view of an allowed module: attributes that are modules come back as
    views too, and modules outside the allowlist are not reachable through it."""

    __slots__ = ("_module",)

    def __init__(self, module):
        object.__setattr__(self, "_module", module)

    def __getattr__(self, name):
        check_attribute(name)
        return expose(getattr(object.__getattribute__(self, "_module"), name))

    def __setattr__(self, name, value):
        raise SandboxError("modules are read-only in sandboxed code")

    __delattr__ = __setattr__

    def __dir__(self):
        return dir(object.__getattribute__(self, "_module"))

    def __repr__(self):
        return "<module %s>" % object.__getattribute__(self, "_module").__name__


_views = {}


def allowed_module(name):
    top = name.partition(".")[0]
    return top in ALLOWED and top not in DENIED


def expose(value):
    if isinstance(value, types.ModuleType):
        if not allowed_module(value.__name__):
            raise SandboxError("module '%s' is not allowed in sandboxed code" % value.__name__)
        view = _views.get(value.__name__)
        if view is None:
            view = _views[value.__name__] = ModuleView(value)
        return view
    return value


_real_import = __import__


def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level:
        raise ImportError("relative imports are not allowed in sandboxed code")
    if not allowed_module(name):
        raise ImportError("import of '%s' is not allowed in sandboxed code" % name)
    return expose(_real_import(name, None, None, fromlist, 0))


def safe_getattr(obj, name, *default):
    check_attribute(name)
    return expose(getattr(obj, name, *default))


def safe_hasattr(obj, name):
    check_attribute(name)
    return hasattr(obj, name)


def writable(obj):
    """Attribute writes may change objects the code made, never shared modules or classes
    (a change there would outlive the run in this reused worker)."""
    if isinstance(obj, (type, types.ModuleType, ModuleView)):
        raise SandboxError("modules and classes are read-only in sandboxed code")
    return obj


def safe_setattr(obj, name, value):
    check_attribute(name)
    setattr(writable(obj), name, value)


def safe_delattr(obj, name):
    check_attribute(name)
    delattr(writable(obj), name)


def safe_open(file, mode="r", *args, **kwargs):
    if isinstance(file, int):
        raise PermissionError("open() of a file descriptor is not allowed")
    real = os.path.realpath(os.fsdecode(file))
    if not inside(real, DATA_ROOTS):
        raise PermissionError("open() outside the data directories is not allowed: %s" % file)
    return open(real, mode, *args, **kwargs)


SAFE_BUILTIN_NAMES = """abs all any ascii bin bool bytearray bytes callable chr classmethod
complex dict dir divmod enumerate filter float format frozenset hash hex id int isinstance
issubclass iter len list map max min next object oct ord pow print property range repr
reversed round set slice sorted staticmethod str sum super tuple type zip __build_class__
True False None NotImplemented Ellipsis""".split()

import builtins as _builtins  # noqa: E402

SAFE_BUILTINS = {name: getattr(_builtins, name) for name in SAFE_BUILTIN_NAMES}
SAFE_BUILTINS.update(
    (name, value)
    for name, value in vars(_builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)
SAFE_BUILTINS.update(
    __import__=guarded_import,
    getattr=safe_getattr,
    hasattr=safe_hasattr,
    setattr=safe_setattr,
    delattr=safe_delattr,
    open=safe_open,
)
WRITE_GUARD = "__kailash_writable__"


class Checker(ast.NodeTransformer):
    """Refuses what the sandbox forbids and routes attribute writes through `writable`."""

    def __init__(self):
        self.uses_pandas = False

    def fail(self, node, what):
        raise SandboxError("%s is not allowed (line %d)" % (what, getattr(node, "lineno", 0)))

    def visit_Name(self, node):
        if node.id.startswith("__"):
            self.fail(node, "the name '%s'" % node.id)
        return node

    def visit_Attribute(self, node):
        try:
            check_attribute(node.attr)
        except SandboxError:
            self.fail(node, "access to attribute '%s'" % node.attr)
        self.generic_visit(node)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            guard = ast.Call(ast.Name(WRITE_GUARD, ast.Load()), [node.value], [])
            node.value = ast.copy_location(guard, node.value)
        return node

    def visit_Import(self, node):
        for alias in node.names:
            self.note_import(alias.name)
        return node

    def visit_ImportFrom(self, node):
        if node.level:
            self.fail(node, "a relative import")
        for alias in node.names:
            if alias.name == "*":
                self.fail(node, "a star import")
            try:
                check_attribute(alias.name)
            except SandboxError:
                self.fail(node, "importing '%s'" % alias.name)
        self.note_import(node.module or "")
        return node

    def note_import(self, name):
        if name.partition(".")[0] == "pandas":
            self.uses_pandas = True


@functools.lru_cache(maxsize=512)
def compile_checked(source, mode):
    """(code object, uses pandas) for checked source; cached, as workflows repeat."""
    tree = ast.parse(source, "<node>", mode)
    checker = Checker()
    tree = ast.fix_missing_locations(checker.visit(tree))
    return compile(tree, "<node>", mode), checker.uses_pandas


def namespace(values):
    ns = {"__builtins__": dict(SAFE_BUILTINS), "__name__": "__sandbox__", WRITE_GUARD: writable}
    ns.update(values)
    return ns


# ------------------------------------------------------------------ JSON in and out

def as_frame(value):
    """A table from CSV-like records, typed the way pandas.read_csv would type it."""
    import pandas

    frame = pandas.DataFrame.from_records(value)
    for column in frame.columns:
        series = frame[column]
        if series.map(lambda v: isinstance(v, str)).all():
            series = series.replace("", math.nan)
            try:
                series = pandas.to_numeric(series)
            except (ValueError, TypeError):
                pass
            frame[column] = series
    return frame


def is_records(value):
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def prepare_inputs(inputs, uses_pandas):
    if not uses_pandas:
        return inputs
    return {k: as_frame(v) if is_records(v) else v for k, v in inputs.items()}


class NotJson(TypeError):
    pass


def plain(value, depth=0):
    """`value` as plain JSON data: pandas/numpy values converted, NaN/inf as null."""
    if depth > 100:
        raise NotJson("the value is nested too deeply")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {plain_key(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return plain(float(value))
    kind = type(value).__module__.partition(".")[0]
    if kind in ("numpy", "pandas"):
        return plain(from_library(value), depth + 1)
    raise NotJson("a value of type %s is not JSON" % type(value).__name__)


def plain_key(key):
    key = plain(key)
    return key if isinstance(key, str) else json.dumps(key)


def from_library(value):
    name = type(value).__name__
    if name == "DataFrame":
        return value.to_dict("records")
    if name == "Series":
        return value.to_dict()
    if name in ("Timestamp", "Timedelta", "Period"):
        return None if value != value else value.isoformat()
    if name in ("NaTType", "NAType"):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise NotJson("a value of type %s is not JSON" % name)


def encode(output):
    try:
        return json.dumps(output, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError):
        return json.dumps(plain(output), separators=(",", ":"), allow_nan=False).encode()


def is_jsonable_local(value):
    return not isinstance(
        value, (types.ModuleType, ModuleView, types.FunctionType, types.BuiltinFunctionType,
                type, types.MethodType)
    )


# ------------------------------------------------------------------ the two node kinds

def run_code(request):
    code, inputs = request["code"], request["inputs"]
    compiled, uses_pandas = compile_checked(code, "exec")
    values = prepare_inputs(inputs, uses_pandas)
    ns = namespace(values)
    exec(compiled, ns)
    if "result" in ns:
        return {"result": ns["result"]}
    # No `result`: the public, JSON-able names the code bound. Inputs it left alone and the
    # node's own configuration (`code` and the other keys the gateway lists) are not output.
    excluded = set(request["exclude"])
    output = {}
    for name, value in ns.items():
        if name.startswith("_") or name in excluded or not is_jsonable_local(value):
            continue
        if name in values and values[name] is value:
            continue
        try:
            output[name] = plain(value)
        except NotJson:
            continue
    return output


def compile_transformation(source):
    """('lambda' | 'expression' | 'block', code object, uses pandas)."""
    try:
        tree = ast.parse(source, "<node>", "eval")
    except SyntaxError:
        compiled, uses_pandas = compile_checked(source, "exec")
        return "block", compiled, uses_pandas
    compiled, uses_pandas = compile_checked(source, "eval")
    kind = "lambda" if isinstance(tree.body, ast.Lambda) else "expression"
    return kind, compiled, uses_pandas


def run_transform(request):
    inputs = request["inputs"]
    result = inputs.get("data")
    for index, source in enumerate(request["transformations"], 1):
        if not isinstance(source, str):
            raise SandboxError("transformation %d is not a string of Python" % index)
        try:
            kind, compiled, uses_pandas = compile_transformation(source)
            values = prepare_inputs(dict(inputs, data=result, result=result), uses_pandas)
            ns = namespace(values)
            if kind == "block":
                exec(compiled, ns)
                result = ns.get("result")
            elif kind == "expression":
                result = eval(compiled, ns)
            else:
                function = eval(compiled, ns)
                result = [function(item) for item in result] if isinstance(result, list) else function(result)
        except Exception as error:
            raise TransformationFailed(index, error) from error
    return {"result": result}


class TransformationFailed(Exception):
    def __init__(self, index, error):
        super().__init__(index, error)
        self.index, self.error = index, error


def describe(error):
    """One line for the node error: the exception and the line of user code it came from."""
    prefix = ""
    if isinstance(error, TransformationFailed):
        prefix, error = "transformation %d: " % error.index, error.error
    if isinstance(error, SyntaxError) and error.filename == "<node>":
        return "%sSyntaxError: %s (line %s)" % (prefix, error.msg, error.lineno)
    line = None
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<node>":
            line = tb.tb_lineno
        tb = tb.tb_next
    text = "%s%s: %s" % (prefix, type(error).__name__, error)
    return text + (" (line %d)" % line if line else "")


RUNNERS = {"code": run_code, "transform": run_transform}


def serve():
    while True:
        request = read_frame()
        capture = Capture()
        sys.stdout = sys.stderr = capture
        fatal = False
        try:
            arm_cpu_limit()
            output = RUNNERS[request["kind"]](request)
            try:
                payload = encode({"ok": True, "output": output, "printed": capture.text()})
            except NotJson as error:
                raise NotJson("the output is not JSON: %s" % error) from None
            if len(payload) > MAX_OUTPUT:
                raise OutputLimit(
                    "the output is %d bytes; the limit is %d" % (len(payload), MAX_OUTPUT)
                )
        except BaseException as error:  # noqa: B902 - user code may raise anything
            # After a MemoryError or a SystemExit-style escape the interpreter's state is not
            # to be trusted: the gateway replaces the worker.
            inner = error.error if isinstance(error, TransformationFailed) else error
            fatal = isinstance(inner, (MemoryError, RecursionError, SystemExit, KeyboardInterrupt))
            message = describe(error)
            if isinstance(inner, MemoryError):
                message = "the code exceeded the memory limit (MemoryError)"
            payload = encode({"ok": False, "error": message, "fatal": fatal,
                              "printed": capture.text()[-4096:]})
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        write_frame(payload)
        if fatal:
            os._exit(0)


apply_rlimits()
install_audit_hook()
send({"ready": True, "python": sys.version.split()[0]})
serve()
