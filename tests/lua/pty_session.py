#!/usr/bin/python3
# Drives a program through a pseudo-terminal (standard library only), for
# tests/lua/test_repl.lua: pty_session.py STEPS_FILE PROGRAM [ARGS...].
# STEPS_FILE holds one step a line: "expect TEXT" waits (20 s at most) until
# TEXT has appeared in the output since the last expect; "send TEXT" types it
# (\n, \t, \x03 as in Python literals); "sleep SECONDS". The output goes to
# stdout; the exit status is 0 when every expect was met and the program ended.
import os, pty, select, sys, time

def main():
    steps = [l.rstrip("\n").split(" ", 1) for l in open(sys.argv[1]) if l.strip()]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(sys.argv[2], sys.argv[2:])
    out, seen = b"", 0

    def read(timeout):
        nonlocal out
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return True
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        out += data
        return True

    ok = True
    for kind, arg in ((s[0], s[1] if len(s) > 1 else "") for s in steps):
        text = arg.encode().decode("unicode_escape").encode()
        if kind == "send":
            os.write(fd, text)
        elif kind == "sleep":
            time.sleep(float(arg))
        elif kind == "expect":
            deadline = time.time() + 20
            while out.find(text, seen) < 0 and time.time() < deadline:
                if not read(0.1):
                    break
            at = out.find(text, seen)
            if at < 0:
                sys.stdout.write("pty_session: never saw %r\n" % arg)
                ok = False
                break
            seen = at + len(text)
    deadline, done = time.time() + 20, 0
    while not done and time.time() < deadline:
        alive = read(0.1)
        done, _ = os.waitpid(pid, os.WNOHANG)
        if not alive and not done:
            done, _ = os.waitpid(pid, 0)
    if not done:
        sys.stdout.write("pty_session: the program did not end\n")
        os.kill(pid, 9)
        ok = False
    while read(0):
        pass
    sys.stdout.write(out.decode(errors="replace"))
    sys.exit(0 if ok else 1)

main()
