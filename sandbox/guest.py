"""The candidate-side server, run as a fresh interpreter for every job:

    python3 -s -S -c "import sys; sys.path.insert(0, '/opt/sandbox'); import guest; guest.serve(3, 4)"

It reads the candidate's source as the first request, executes it, then answers ``call`` requests from
the trusted judge process with wire-encoded return values (objects with no plain form stay here and
are sent as handles). Everything in this process is untrusted once the candidate's code has run: it
holds no marker, no expected output and no test code, and whatever it replies is only data that the
judge compares itself.
"""

# Only built-in modules (already loaded at start-up) and ``wire``: with -S even ``os`` is not loaded,
# and every import here is paid by every job.
import builtins
import sys

try:
    import wire  # beside this file in the image; the runner puts this directory on sys.path
except ImportError:  # imported from the repository (tests)
    from sandbox import wire


def _resolve(ns: dict, name: str):
    """A top-level function, or a method of ``class Solution`` (APPS/LeetCode call style)."""
    if name in ns:
        return ns[name]
    sol = ns.get("Solution")
    if isinstance(sol, type) and hasattr(sol, name):
        return getattr(sol(), name)
    raise NameError(f"name {name!r} is not defined")


def _error_reply(exc: BaseException) -> dict:
    import traceback  # only on the error path: every import costs start-up time

    tb = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3)
    return {"raise": type(exc).__name__, "msg": "".join(tb)[-2000:]}


def serve(req_fd: int, rep_fd: int) -> None:
    req = open(req_fd, "rb", buffering=1 << 16)
    rep = open(rep_fd, "wb", buffering=1 << 16)
    objects: dict[int, object] = {}

    def handle_of(obj: object) -> int:
        ident = len(objects) + 1
        objects[ident] = obj
        return ident

    ns: dict = {"__name__": "__main__", "__builtins__": builtins}

    def lookup(ref):
        return objects[ref] if type(ref) is int else _resolve(ns, ref)

    def reply(msg: dict) -> None:
        rep.write(wire.dumps(msg))
        rep.flush()

    while True:
        msg = wire.read_request(req)
        if msg is None:
            return
        op = msg.get("op")
        if op == "load":
            try:
                code = compile(msg["source"], "<candidate>", "exec")
            except (SyntaxError, ValueError) as exc:
                reply({"load": "syntax_error", "msg": f"{type(exc).__name__}: {exc}"[:2000]})
                continue
            # Drop our own references so the candidate finds nothing of ours worth reading.
            del msg
            try:
                exec(code, ns)
            except BaseException as exc:  # SystemExit included: exiting early is a failure
                reply({"load": "runtime_error", **_error_reply(exc)})
                continue
            sys.stdout.flush()
            # What the program defined, so the judge binds the names the tests use to this
            # program's objects (a program may shadow a builtin, or import a module the tests use).
            names, modules = [], {}
            for key, value in list(ns.items())[:10000]:
                if type(key) is str and not key.startswith("__"):
                    names.append(key)
                    if type(value) is type(sys):
                        modules[key] = str(getattr(value, "__name__", ""))[:100]
            reply({"load": "ok", "names": names, "modules": modules})
        elif op == "call":
            try:
                ref = msg["ref"]
                target = objects[ref] if type(ref) is int else _resolve(ns, ref)
                args = wire.decode(msg.get("args", []), make_handle=lookup)
                kwargs = wire.decode(msg.get("kwargs", {"$d": []}), make_handle=lookup)
                del msg
                result = target(*args, **kwargs)
                sys.stdout.flush()
                out = {"ok": wire.encode(result, handle_of)}
            except BaseException as exc:
                out = _error_reply(exc)
            reply(out)
        else:
            reply({"raise": "ProtocolError", "msg": f"unknown op {op!r}"})


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
