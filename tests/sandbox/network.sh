#!/bin/sh
# Hostile agent: try every way out of the sandbox. DW_TEST_PORT is a TCP
# listener on the host's 127.0.0.1; DW_TEST_ABSTRACT an abstract Unix socket.
exec python3 - <<'PY'
import os, socket

def attempt(label, fn):
    try:
        fn()
        print(label, "OPEN")
    except Exception as error:
        print(label, "BLOCKED", type(error).__name__)

def tcp():
    s = socket.create_connection(("127.0.0.1", int(os.environ["DW_TEST_PORT"])), timeout=2)
    s.close()

def resolve():
    socket.getaddrinfo("deb.debian.org", 80)

def abstract():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect("\0" + os.environ["DW_TEST_ABSTRACT"])

def gateway():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect("/run/driftwatch-gateway/gw.sock")

def outside():
    s = socket.create_connection(("10.0.2.2", 80), timeout=2)
    s.close()

attempt("TCP_LOOPBACK", tcp)
attempt("DNS", resolve)
attempt("ABSTRACT_UNIX", abstract)
attempt("EXTERNAL", outside)
attempt("GATEWAY", gateway)
print("INTERFACES", " ".join(sorted(name for _, name in socket.if_nameindex())))

sockets = []
for root, dirs, files in os.walk("/", topdown=True):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys")]
    for name in files + dirs:
        path = os.path.join(root, name)
        try:
            import stat
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                sockets.append(path)
        except OSError:
            pass
print("SOCKETS", " ".join(sockets))
print("DONE")
PY
