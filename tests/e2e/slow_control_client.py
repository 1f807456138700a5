#!/usr/bin/env python3
"""A control-socket client that never finishes its command line.

usage: slow_control_client.py SOCKET SECONDS MODE

MODE "drip": connect, send one byte ("x", never a newline) every 0.3 s,
reconnect when the daemon drops it. MODE "silent": connect, send nothing,
close after 0.9 s, reconnect. Either runs for SECONDS, then prints how
many connections it made and how many the daemon closed first.

A daemon that reads its control socket on the packet thread with a wait
per read is held by "drip" for up to 256 x 0.3 s per connection, and by
"silent" for nearly all its time: its packets wait meanwhile."""
import socket
import sys
import time


def main():
    path, seconds, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    end = time.monotonic() + seconds
    conns = dropped = 0
    while time.monotonic() < end:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            time.sleep(0.1)
            continue
        conns += 1
        s.settimeout(0.3)
        started = time.monotonic()
        while time.monotonic() < end:
            try:
                if mode == "drip":
                    s.send(b"x")
                data = s.recv(4096)
                if data == b"" or data:
                    # an answer (an error) or the close: dropped
                    dropped += 1
                    break
            except socket.timeout:
                pass
            except OSError:
                dropped += 1
                break
            if mode == "silent" and time.monotonic() - started >= 0.9:
                break
        s.close()
    print(f"connections {conns} dropped-by-daemon {dropped}")


if __name__ == "__main__":
    main()
