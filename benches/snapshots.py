#!/usr/bin/env python3
"""Snapshots and compaction (§7), measured side by side in one run.

Part a: memory, data-dir size and follower restart time after 100k, 1M and 3M
SETs over 1,000 keys, with snapshots on (the defaults) and off.
Part b: SET latency over a 1M-key map without snapshots, during one BGSAVE per
node, and during back-to-back BGSAVEs on every node.

Usage: benches/snapshots.py target/release/raftnode [OUT] [a|b|all]
Needs ../shared/bench/kvload built (/tmp/kvload-target/release/kvload) and
free loopback ports 21000-21900."""
import json, os, shutil, signal, socket, subprocess, sys, time

BIN = sys.argv[1]
KVLOAD = "/tmp/kvload-target/release/kvload"
OUT = sys.argv[2] if len(sys.argv) > 2 else "/tmp/bench10.out"
PART = sys.argv[3] if len(sys.argv) > 3 else "all"
BASE = 21000

def log(*a):
    print(*a, flush=True)
    with open(OUT, "a") as f:
        print(*a, file=f)

def resp(port, *args, timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    msg = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() if isinstance(x, str) else x for x in args))
    s.sendall(msg)
    data = b""
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
        if data.startswith(b"$"):
            n = int(data[1:data.index(b"\r\n")])
            if n < 0 or len(data) >= data.index(b"\r\n") + 2 + n + 2:
                break
        elif data.endswith(b"\r\n"):
            break
    s.close()
    return data

def info(port):
    raw = resp(port, "INFO")
    d = {}
    for line in raw.decode(errors="replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            d[k.strip()] = v.strip()
    return d

class Cluster:
    def __init__(self, root, extra, base):
        self.root, self.extra, self.base = root, extra, base
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        self.procs = {}
        for i in (1, 2, 3):
            self.start(i)

    def cport(self, i): return self.base + i
    def rport(self, i): return self.base + 100 + i
    def ddir(self, i): return f"{self.root}/node-{i}"

    def start(self, i):
        args = [BIN, "run", "--id", str(i), "--data-dir", self.ddir(i),
                "--raft-addr", f"127.0.0.1:{self.rport(i)}",
                "--client-addr", f"127.0.0.1:{self.cport(i)}"] + self.extra
        for j in (1, 2, 3):
            if j != i:
                args += ["--peer", f"{j}=127.0.0.1:{self.rport(j)}"]
        err = open(f"{self.root}/node-{i}.log", "a")
        self.procs[i] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err,
                                         env=dict(os.environ, RUST_LOG="warn"))
        return self.procs[i]

    def wait_serving(self, i, deadline=60):
        t = time.time()
        while time.time() - t < deadline:
            try:
                if resp(self.cport(i), "PING").startswith(b"+PONG"):
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError("node not serving")

    def leader(self):
        for _ in range(2000):
            for i in self.procs:
                try:
                    d = info(self.cport(i))
                    if d.get("role") == "leader":
                        return i
                except OSError:
                    pass
            time.sleep(0.01)
        raise RuntimeError("no leader")

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def stop(self):
        for p in self.procs.values():
            p.kill(); p.wait()

def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

def du(path):
    return int(subprocess.check_output(["du", "-sb", path]).split()[0])

def kvload(port, op, clients, seconds, keys, extra=()):
    out = subprocess.check_output([KVLOAD, "--target", "resp", "--endpoints", f"127.0.0.1:{port}",
                                   "--op", op, "--clients", str(clients), "--seconds", str(seconds),
                                   "--value-size", "100", "--keys", str(keys), "--no-populate",
                                   "--warmup-seconds", "1", *extra], stderr=subprocess.DEVNULL)
    return json.loads(out.decode().strip().splitlines()[-1])

def part_a():
    log("## memory / data dir / restart, 3 nodes, 100-byte values over 1,000 keys")
    rows = []
    for mode, extra in (("on", ["--snapshot-entries", "10000"]), ("off", ["--snapshot-entries", "0"])):
        c = Cluster(f"/tmp/b10-{mode}", extra, BASE + (0 if mode == "on" else 300))
        try:
            for i in (1, 2, 3): c.wait_serving(i)
            lead = c.leader()
            for target in (100_000, 1_000_000, 3_000_000):
                while int(info(c.cport(lead))["commit_index"]) < target:
                    kvload(c.cport(lead), "put", 64, 5, 1000)
                    lead = c.leader()
                commit = int(info(c.cport(lead))["commit_index"])
                rss = max(status_kb(c.procs[i].pid, "VmRSS") for i in (1, 2, 3)) // 1024
                hwm = max(status_kb(c.procs[i].pid, "VmHWM") for i in (1, 2, 3)) // 1024
                disk = max(du(c.ddir(i)) for i in (1, 2, 3)) / 1e6
                f = next(i for i in (1, 2, 3) if i != lead)
                c.kill(f)
                t0 = time.time()
                p = c.start(f)
                while True:
                    try:
                        if int(info(c.cport(f))["last_applied"]) >= commit:
                            break
                    except (OSError, ValueError, KeyError):
                        pass
                    time.sleep(0.005)
                restart = time.time() - t0
                peak = status_kb(p.pid, "VmHWM") // 1024
                row = dict(mode=mode, writes=commit, rss_mib=rss, peak_rss_mib=hwm, data_mb=round(disk, 1),
                           restart_s=round(restart, 2), restart_peak_mib=peak)
                rows.append(row)
                log(json.dumps(row))
        finally:
            c.stop()
    return rows

def populate(port, n):
    """n keys key-0..key-(n-1), 100-byte values, 1,000 SETs per MULTI/EXEC."""
    val = b"x" * 100
    s = socket.create_connection(("127.0.0.1", port))
    batch = 1000
    for start in range(0, n, batch):
        buf = [b"*1\r\n$5\r\nMULTI\r\n"]
        for k in range(start, min(n, start + batch)):
            key = b"key-%d" % k
            buf.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, val))
        buf.append(b"*1\r\n$4\r\nEXEC\r\n")
        s.sendall(b"".join(buf))
        # +OK, batch x +QUEUED, then the EXEC array: read until the array's end.
        need = 5 + 9 * min(batch, n - start) + len(b"*%d\r\n" % min(batch, n - start)) + 5 * min(batch, n - start)
        got = b""
        while len(got) < need:
            got += s.recv(1 << 20)
    s.close()

def part_b():
    log("## write latency during snapshots of a 1M-key map (16 clients, SET over 1M keys)")
    c = Cluster("/tmp/b10-p99", ["--snapshot-entries", "0"], BASE + 600)
    try:
        for i in (1, 2, 3): c.wait_serving(i)
        lead = c.leader()
        t = time.time(); populate(c.cport(lead), 1_000_000)
        log(f"populated 1M keys in {time.time() - t:.1f}s")
        for i in (1, 2, 3):
            resp(c.cport(i), "BGSAVE")
        time.sleep(15)
        res = {"without": [], "one": [], "during": []}
        for rnd in range(3):
            for mode in ("without", "one", "during"):
                stop = False
                saves = 0
                if mode == "during":
                    import threading
                    def saver():
                        nonlocal saves
                        while not stop:
                            for i in (1, 2, 3):
                                try:
                                    if resp(c.cport(i), "BGSAVE").startswith(b"+"):
                                        saves += 1
                                except OSError:
                                    pass
                            time.sleep(0.05)
                    th = threading.Thread(target=saver); th.start()
                if mode == "one":
                    # One snapshot per node, started as the window opens.
                    def once():
                        nonlocal saves
                        time.sleep(1.5)
                        for i in (1, 2, 3):
                            if resp(c.cport(i), "BGSAVE").startswith(b"+"):
                                saves += 1
                    import threading
                    th = threading.Thread(target=once); th.start()
                r = kvload(c.cport(lead), "put", 16, 10, 1_000_000)
                if mode in ("during", "one"):
                    stop = True; th.join()
                time.sleep(4)  # let a trailing snapshot finish
                r["saves"] = saves
                res[mode].append(r)
                log(json.dumps(dict(round=rnd, mode=mode, ops_per_s=r["ops_per_s"], p50_us=r["p50_us"],
                                    p99_us=r["p99_us"], max_us=r["max_us"], errors=r["errors"], bgsaves=saves)))
        med = lambda xs: sorted(xs)[len(xs) // 2]
        for mode in ("without", "one", "during"):
            log(f"median {mode}: ops/s {med([r['ops_per_s'] for r in res[mode]]):.0f} "
                f"p50 {med([r['p50_us'] for r in res[mode]])} us p99 {med([r['p99_us'] for r in res[mode]])} us")
        rss = max(status_kb(c.procs[i].pid, "VmHWM") for i in (1, 2, 3)) // 1024
        st = info(c.cport(lead))
        log(f"leader snapshots_taken {st.get('snapshots_taken')} snapshot_bytes {st.get('snapshot_bytes')}; peak RSS {rss} MiB")
    finally:
        c.stop()

if PART in ("all", "a"): part_a()
if PART in ("all", "b"): part_b()
