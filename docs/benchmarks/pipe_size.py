"""Splice throughput between two loopback TCP sockets through one pipe, per pipe size
(docs/kernel-offload.md#splice-of-bodies). Run: python3 docs/benchmarks/pipe_size.py"""
import os, socket, threading, time, fcntl, statistics
F_SETPIPE_SZ=1031
TOTAL=512<<20
def pair():
    l=socket.socket(); l.bind(("127.0.0.1",0)); l.listen(1)
    c=socket.create_connection(l.getsockname()); s,_=l.accept(); l.close(); return s,c
def run(psz):
    (src,srcp),(dst,dstp)=pair(),pair()
    chunk=b"x"*(1<<20)
    def send():
        n=0
        while n<TOTAL: srcp.sendall(chunk); n+=len(chunk)
        srcp.close()
    def recv():
        while dstp.recv(1<<20): pass
    ts=threading.Thread(target=send); tr=threading.Thread(target=recv); ts.start(); tr.start()
    r,w=os.pipe(); fcntl.fcntl(w,F_SETPIPE_SZ,psz)
    calls=0; moved=0; t0=time.perf_counter(); c0=time.process_time()
    while True:
        n=os.splice(src.fileno(),w,psz); calls+=1
        if n==0: break
        moved+=n; left=n
        while left: left-=os.splice(r,dst.fileno(),left); calls+=1
    dt=time.perf_counter()-t0
    dst.close(); ts.join(); tr.join()
    return moved/dt/1e9, calls, moved/ (calls/2)
for psz in [64<<10, 256<<10, 1<<20]:
    res=[run(psz) for _ in range(3)]
    print(f"pipe {psz>>10:5d} KiB: GB/s median {statistics.median(r[0] for r in res):.2f}, splice calls {statistics.median(r[1] for r in res):.0f}, bytes per in-splice {statistics.median(r[2] for r in res)/1024:.0f} KiB")
