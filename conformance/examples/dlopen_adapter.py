#!/usr/bin/env python3
"""A conformance adapter written from conformance/IMPLEMENTING.md alone.

It wraps the system's loader: each load is linked with `cc -shared` and
opened with dlopen (RTLD_NOW | RTLD_GLOBAL) through ctypes, a call goes
through the module's symbols in load order, removal is dlclose, and `end`
exits the process (the C library runs the handlers and finalizers).

    cargo xtask conformance --impl 'python3 conformance/examples/dlopen_adapter.py' --format elf --mode inproc
"""

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile

libc = ctypes.CDLL(None)
libdl = ctypes.CDLL("libdl.so.2")
libdl.dlclose.argtypes = [ctypes.c_void_p]

requests = os.fdopen(int(os.environ["SOLDER_CONFORMANCE_REQUESTS_FD"]), "r")
replies = os.fdopen(int(os.environ["SOLDER_CONFORMANCE_REPLIES_FD"]), "w")
scratch = tempfile.mkdtemp(prefix="dlopen-adapter-")
modules = []  # (name, ctypes.CDLL), in load order
absolute = {}


def reply(obj):
    libc.fflush(None)  # the JIT'd code's C stdio first
    sys.stdout.flush()
    replies.write(json.dumps(obj) + "\n")
    replies.flush()


def link_error(text):
    kind = "unsupported"
    if "undefined symbol" in text or "undefined reference" in text:
        kind = "undefined-symbol"
    elif "multiple definition" in text:
        kind = "duplicate-symbol"
    return {"result": "link_error", "kind": kind, "message": text}


def load(request):
    output = os.path.join(scratch, "%d-%s.so" % (len(modules), request["module"]))
    command = ["cc", "-shared", "-o", output] + [o["path"] for o in request["objects"]]
    for archive in request.get("archives", []):
        if archive["whole"]:
            command += ["-Wl,--whole-archive", archive["path"], "-Wl,--no-whole-archive"]
        else:
            command.append(archive["path"])
    command += ["-Wl,--defsym=%s=%#x" % item for item in absolute.items()]
    linked = subprocess.run(command, capture_output=True, text=True)
    if linked.returncode != 0:
        return link_error(linked.stderr)
    try:
        library = ctypes.CDLL(output, mode=os.RTLD_NOW | os.RTLD_GLOBAL)
    except OSError as error:
        return link_error(str(error))
    finally:
        # The loader keeps its mapping; the file is not needed again, and a
        # session ended by a crash leaves nothing behind.
        os.remove(output)
    modules.append((request["module"], library))
    return {"result": "ok"}


def call(request):
    for _, library in modules:
        try:
            function = getattr(library, request["symbol"])
        except AttributeError:
            continue
        function.restype = ctypes.c_uint64
        function.argtypes = [ctypes.c_int64] * len(request["args"])
        return {"result": "returned", "value": function(*request["args"])}
    return {"result": "missing_symbol", "name": request["symbol"]}


def remove(request):
    for index, (name, library) in enumerate(modules):
        if name == request["module"]:
            del modules[index]
            libdl.dlclose(library._handle)
            return {"result": "ok"}
    return {"result": "no_module", "name": request["module"]}


reply({
    "protocol": 1,
    "name": "dlopen-adapter",
    "version": "1",
    "formats": ["elf"],
    "modes": ["inproc"],
    "capabilities": ["remove", "archives", "absolute"],
    "cflags": ["-fPIC"],
})
for line in requests:
    request = json.loads(line)
    op = request["op"]
    if op == "start":
        absolute = request["session"].get("absolute", {})
        reply({"result": "ok"})
    elif op == "load":
        reply(load(request))
    elif op == "call":
        reply(call(request))
    elif op == "remove":
        reply(remove(request))
    elif op == "end":
        shutil.rmtree(scratch, ignore_errors=True)
        libc.fflush(None)
        libc.exit(0)  # the C library's exit: handlers, then finalizers
    else:
        reply({"result": "failed", "message": "unsupported request " + op})
shutil.rmtree(scratch, ignore_errors=True)
