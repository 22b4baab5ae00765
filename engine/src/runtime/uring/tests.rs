//! The driver against real sockets on 127.0.0.1, with each fast path on and off.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::net::{UringListener, UringStream};
use super::*;
use crate::runtime::io::{Io, Pooled};

/// Run `f` on a worker-like loop with `settings`; panics if the kernel lacks
/// a fast path the settings ask for (the tests must not pass by falling back).
fn on_ring<F, Fut>(settings: UringSettings, f: F) -> Fut::Output
where
    F: FnOnce(Features) -> Fut,
    Fut: Future,
{
    let detected = detect(&settings, 64).expect("io_uring available");
    assert!(
        detected.fallbacks.is_empty(),
        "the kernel lacks a fast path under test: {:?}",
        detected.fallbacks
    );
    let features = detected.features;
    let stats = Arc::new(WorkerStats::default());
    let driver = worker_driver(&settings, features, stats).expect("worker ring");
    run(driver, f(features)).expect("runtime")
}

fn variants() -> Vec<(&'static str, UringSettings)> {
    let all = UringSettings {
        send_zc_min: 4096,
        ..UringSettings::all_on(64)
    };
    vec![
        ("plain", UringSettings::plain(64)),
        ("all fast paths", all),
        (
            "buffer ring, one-shot receives",
            UringSettings {
                recv_multishot: false,
                ..UringSettings::plain(64)
            }
            .with(|s| s.buf_ring = true),
        ),
        (
            "fixed files only",
            UringSettings::plain(64).with(|s| s.fixed_files = true),
        ),
        (
            "sqpoll",
            UringSettings::all_on(64).with(|s| s.sqpoll = true),
        ),
        (
            "all fast paths, deferred task runs",
            UringSettings::all_on(64).with(|s| s.taskrun = TaskRun::Defer),
        ),
        (
            "buffer ring, cooperative task runs",
            UringSettings::plain(64).with(|s| {
                s.buf_ring = true;
                s.taskrun = TaskRun::Coop;
            }),
        ),
    ]
}

impl UringSettings {
    fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

/// A listener on an ephemeral loopback port, on the ring.
fn listen() -> (UringListener, SocketAddr) {
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    (UringListener::new(std_listener), addr)
}

/// Read everything the stream sends until end of stream, pooled or not.
async fn read_to_end(s: &UringStream) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        match s.read_pooled().await.expect("pooled read") {
            Pooled::Data(lease) => out.extend_from_slice(&lease),
            Pooled::Eof => return out,
            Pooled::Unavailable => {
                let (res, buf) = s.read(BytesMut::with_capacity(8192)).await;
                match res.expect("read") {
                    0 => return out,
                    _ => out.extend_from_slice(&buf),
                }
            }
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn accept_receive_send_with_each_fast_path() {
    for (name, settings) in variants() {
        let body = pattern(1 << 20);
        let expected = body.clone();
        let (got, echoed) = on_ring(settings, |_| async move {
            let (mut listener, addr) = listen();
            // The peer: sends 1 MiB, closes its write side, reads the reply.
            let peer = std::thread::spawn(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(&body).unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
                let mut back = Vec::new();
                c.read_to_end(&mut back).unwrap();
                back
            });
            let (s, from) = listener.accept().await.expect("accept");
            assert!(from.ip().is_loopback());
            let got = read_to_end(&s).await;
            let (res, _) = s.write_all(BytesMut::from(&got[..])).await;
            res.expect("write");
            drop(s);
            let echoed = tokio::task::spawn_blocking(move || peer.join().unwrap())
                .await
                .unwrap();
            (got, echoed)
        });
        assert_eq!(got.len(), expected.len(), "{name}: bytes received");
        assert!(got == expected, "{name}: received bytes differ");
        assert!(echoed == expected, "{name}: echoed bytes differ");
    }
}

#[test]
fn connect_and_many_connections_reuse_slots_and_buffers() {
    for (name, settings) in variants() {
        let total = on_ring(settings, |_| async move {
            let (mut listener, addr) = listen();
            let mut total = 0;
            // More connections than the test ring has file slots (64 * 2 +
            // 64) or buffers, one after another: slots and buffers must come
            // back.
            for i in 0..300u32 {
                let client = tokio::task::spawn_local(async move {
                    let c = UringStream::connect(addr).await.expect("connect");
                    let (res, _) = c.write_all(BytesMut::from(&i.to_be_bytes()[..])).await;
                    res.expect("client write");
                    c.shutdown_write().unwrap();
                    read_to_end(&c).await
                });
                let (s, _) = listener.accept().await.expect("accept");
                let got = read_to_end(&s).await;
                assert_eq!(got, i.to_be_bytes());
                let (res, _) = s.write_all(BytesMut::from(&b"ok"[..])).await;
                res.expect("server write");
                drop(s);
                assert_eq!(client.await.unwrap(), b"ok");
                total += 1;
            }
            let lent = driver::with(|d| d.bufs.as_ref().map_or(0, |b| b.lent()));
            assert_eq!(lent, 0, "every ring buffer went back");
            total
        });
        assert_eq!(total, 300, "{name}");
    }
}

#[test]
fn an_exhausted_buffer_ring_falls_back_without_losing_bytes() {
    // Two 1 KiB buffers for a 256 KiB stream read slowly: the ring runs dry,
    // the receive reports it, and plain reads carry on in order.
    let settings = UringSettings {
        buf_ring_entries: 2,
        buf_size: 1024,
        ..UringSettings::all_on(64)
    };
    let body = pattern(256 * 1024);
    let expected = body.clone();
    let (got, exhausted) = on_ring(settings, |_| async move {
        let (mut listener, addr) = listen();
        let peer = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&body).unwrap();
        });
        let (s, _) = listener.accept().await.expect("accept");
        // Hold both buffers while the rest arrives.
        let mut held = Vec::new();
        let mut got = Vec::new();
        while held.len() < 2 {
            match s.read_pooled().await.unwrap() {
                Pooled::Data(l) => held.push(l),
                other => panic!("expected data, got {}", matches!(other, Pooled::Eof)),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        for l in held.drain(..) {
            got.extend_from_slice(&l);
        }
        got.extend(read_to_end(&s).await);
        tokio::task::spawn_blocking(move || peer.join().unwrap())
            .await
            .unwrap();
        let exhausted = driver::with(|d| d.stats.uring_buffers_exhausted.get());
        (got, exhausted)
    });
    assert!(got == expected, "bytes differ (got {} bytes)", got.len());
    assert!(
        exhausted > 0,
        "the ring never ran dry: the test did not test the fallback"
    );
}

#[test]
fn a_dropped_read_loses_nothing_with_multishot() {
    let got = on_ring(UringSettings::all_on(64), |f| async move {
        assert!(f.recv_multishot);
        let (mut listener, addr) = listen();
        let peer = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(150));
            c.write_all(b"after the timeout").unwrap();
        });
        let (s, _) = listener.accept().await.expect("accept");
        // A read abandoned on a timeout (as the idle timer does)...
        let early = tokio::time::timeout(Duration::from_millis(50), s.read_pooled()).await;
        assert!(early.is_err(), "nothing was sent yet");
        // ...leaves the armed receive in place: the next read gets the bytes.
        let got = read_to_end(&s).await;
        tokio::task::spawn_blocking(move || peer.join().unwrap())
            .await
            .unwrap();
        got
    });
    assert_eq!(got, b"after the timeout");
}

#[test]
fn dropping_a_stream_with_a_read_in_flight_closes_it() {
    on_ring(UringSettings::all_on(64), |_| async move {
        let (mut listener, addr) = listen();
        let peer = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 1];
            // Returns 0 (end of stream) once the server side is gone.
            c.read(&mut b).unwrap()
        });
        let (s, _) = listener.accept().await.expect("accept");
        let s = std::rc::Rc::new(s);
        let reader = {
            let s = std::rc::Rc::clone(&s);
            tokio::task::spawn_local(async move {
                let _ = s.read(BytesMut::with_capacity(64)).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        reader.abort();
        let _ = reader.await;
        drop(s);
        let n = tokio::task::spawn_blocking(move || peer.join().unwrap())
            .await
            .unwrap();
        assert_eq!(n, 0, "the peer saw the connection close");
    });
}

#[test]
fn submissions_are_batched_per_loop_turn() {
    // 32 connections each sending a message in the same turn: far fewer
    // io_uring_enter calls than operations.
    let (calls, ops) = on_ring(UringSettings::all_on(64), |_| async move {
        let (mut listener, addr) = listen();
        let mut clients = Vec::new();
        for _ in 0..32 {
            clients.push(TcpStream::connect(addr).unwrap());
        }
        let mut streams = Vec::new();
        for _ in 0..32 {
            streams.push(listener.accept().await.unwrap().0);
        }
        let before = driver::with(|d| d.stats.uring_submit_calls.get());
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|s| {
                tokio::task::spawn_local(async move {
                    let (res, _) = s.write_all(BytesMut::from(&b"x"[..])).await;
                    res.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let after = driver::with(|d| d.stats.uring_submit_calls.get());
        for mut c in clients {
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap();
        }
        (after - before, 32)
    });
    assert!(calls >= 1, "the sends were submitted");
    assert!(calls <= 4, "{calls} submit calls for {ops} sends");
}

#[test]
fn kernel_versions_parse() {
    assert_eq!(parse_version("6.18.44-fc-v782"), Some((6, 18)));
    assert_eq!(parse_version("5.15.0-91-generic\n"), Some((5, 15)));
    assert_eq!(parse_version("garbage"), None);
}

#[test]
fn the_startup_line_names_every_fast_path() {
    let s = UringSettings::all_on(256);
    let f = Features {
        accept_multishot: true,
        buf_ring: true,
        recv_multishot: false,
        fixed_files: Some(128),
        send_zc_min: 0,
        fixed_buffers: 64,
        sqpoll: false,
        splice: true,
        taskrun: Some(TaskRun::Defer),
    };
    let line = f.summary(&s);
    for part in [
        "multishot accept on",
        "buffer ring on (256 x 16384 B)",
        "multishot receive off",
        "fixed files on (128 slots)",
        "registered buffers on (64 x 64 KiB)",
        "zero-copy send off",
        "task runs defer",
        "sqpoll off",
    ] {
        assert!(line.contains(part), "{line:?} lacks {part:?}");
    }
}

#[test]
fn plain_reads_after_a_multishot_receive_keep_the_byte_order() {
    // A plain `read` on a stream whose multishot receive is armed takes its
    // bytes from the multishot (small reads keep the rest of a buffer aside).
    let body = pattern(40 * 1024);
    let expected = body.clone();
    let got = on_ring(UringSettings::all_on(64), |f| async move {
        assert!(f.recv_multishot);
        let (mut listener, addr) = listen();
        let peer = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&body).unwrap();
        });
        let (s, _) = listener.accept().await.expect("accept");
        let mut got = match s.read_pooled().await.unwrap() {
            Pooled::Data(l) => l.to_vec(),
            _ => panic!("expected data"),
        };
        loop {
            let (res, buf) = s.read(BytesMut::with_capacity(700)).await;
            match res.unwrap() {
                0 => break,
                _ => got.extend_from_slice(&buf),
            }
        }
        tokio::task::spawn_blocking(move || peer.join().unwrap())
            .await
            .unwrap();
        got
    });
    assert!(got == expected, "bytes differ (got {})", got.len());
}

#[test]
fn registered_buffers_carry_writes_and_come_back() {
    let settings = UringSettings {
        fixed_buffers: 4,
        ..UringSettings::plain(64)
    };
    let body = pattern(1 << 20);
    let expected = body.clone();
    let (got, exhausted, in_use) = on_ring(settings, |f| async move {
        assert_eq!(f.fixed_buffers, 4);
        let (mut listener, addr) = listen();
        let peer = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            got
        });
        let (s, _) = listener.accept().await.expect("accept");
        // Hold every buffer: the pool says so.
        let held: Vec<_> = (0..4)
            .map(|_| s.fixed_buffer().expect("a free buffer"))
            .collect();
        let exhausted = s.fixed_buffer().is_none();
        drop(held);
        // 1 MiB in 64 KiB registered writes.
        for chunk in body.chunks(fixedbuf::FIXED_SIZE) {
            let mut buf = s.fixed_buffer().expect("a buffer is free again");
            assert_eq!(buf.append(chunk), chunk.len());
            let (res, _) = s.write_fixed(buf).await;
            res.expect("write_fixed");
        }
        let in_use = driver::with(|d| d.fixed.as_ref().unwrap().in_use());
        drop(s);
        let got = tokio::task::spawn_blocking(move || peer.join().unwrap())
            .await
            .unwrap();
        (got, exhausted, in_use)
    });
    assert!(exhausted, "a fifth buffer was handed out of a pool of four");
    assert_eq!(in_use, 0, "every registered buffer went back to the pool");
    assert!(got == expected, "bytes differ (got {})", got.len());
}

#[test]
fn a_fast_path_the_kernel_refuses_falls_back_with_one_line() {
    // A buffer ring the kernel cannot take (not a power of two: refused before
    // it reaches the kernel, the same path as a kernel without rings), and a
    // multishot receive that needs it.
    let settings = UringSettings {
        buf_ring_entries: 3,
        ..UringSettings::all_on(64)
    };
    let d = detect(&settings, 64).expect("io_uring available");
    assert!(!d.features.buf_ring && !d.features.recv_multishot);
    assert!(d.features.accept_multishot, "the other paths stay on");
    assert_eq!(d.fallbacks.len(), 2, "{:?}", d.fallbacks);
    assert!(d.fallbacks[0].starts_with("CERTGATE_URING_BUF_RING=1 but "));
    assert!(d.fallbacks[0].ends_with(": each read uses a buffer of its connection"));
    assert!(
        d.fallbacks[1].starts_with("CERTGATE_URING_RECV_MULTISHOT=1 but the buffer ring is off")
    );
    // And the worker's ring is built with what is in force.
    let stats = Arc::new(WorkerStats::default());
    let driver = worker_driver(&settings, d.features, stats).expect("worker ring");
    assert!(driver.bufs.is_none());
}

#[test]
fn each_task_run_mode_is_in_force_and_wakes_a_sleeping_worker() {
    // A receive waits while the worker sleeps; the peer sends from another
    // thread later, so the completion work starts on the peer's side. With
    // DEFER_TASKRUN a lost eventfd wake-up would leave the read waiting: the
    // timeout turns that into a failure instead of a hang.
    for mode in [TaskRun::Interrupt, TaskRun::Coop, TaskRun::Defer] {
        let settings = UringSettings::plain(64).with(|s| s.taskrun = mode);
        let (in_force, got) = on_ring(settings, |f| async move {
            let exchange = async move {
                let (mut listener, addr) = listen();
                let peer = std::thread::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    for round in 0..3u8 {
                        std::thread::sleep(Duration::from_millis(30));
                        c.write_all(&[round; 100]).unwrap();
                        let mut back = [0u8; 100];
                        c.read_exact(&mut back).unwrap();
                        assert_eq!(back, [round; 100], "echo of round {round}");
                    }
                });
                let (s, _) = listener.accept().await.expect("accept");
                let mut got = Vec::new();
                while got.len() < 300 {
                    let buf = BytesMut::with_capacity(4096);
                    let (n, buf) = s.read(buf).await;
                    let n = n.expect("read");
                    assert!(n > 0 && n == buf.len(), "read {n}, buffer {}", buf.len());
                    got.extend_from_slice(&buf);
                    let (res, _) = s.write_all(buf).await;
                    res.expect("echo");
                }
                tokio::task::spawn_blocking(move || peer.join().unwrap())
                    .await
                    .unwrap();
                got
            };
            let got = tokio::time::timeout(Duration::from_secs(10), exchange)
                .await
                .expect("every completion woke the sleeping worker");
            (f.taskrun, got)
        });
        assert_eq!(in_force, Some(mode), "{mode:?} is in force");
        let want: Vec<u8> = (0..3u8).flat_map(|r| [r; 100]).collect();
        assert_eq!(got, want, "{mode:?}: bytes received");
    }
}

#[test]
fn sqpoll_has_no_task_run_mode() {
    let settings = UringSettings::plain(64).with(|s| {
        s.sqpoll = true;
        s.taskrun = TaskRun::Defer;
    });
    let d = detect(&settings, 64).expect("io_uring available");
    assert_eq!(d.features.taskrun, None);
    assert!(d.fallbacks.is_empty(), "{:?}", d.fallbacks);
    assert!(d
        .features
        .summary(&settings)
        .contains("task runs interrupt (SQPOLL thread)"));
}

#[test]
fn task_run_names_round_trip() {
    for mode in [TaskRun::Interrupt, TaskRun::Coop, TaskRun::Defer] {
        assert_eq!(TaskRun::parse(mode.name()), Some(mode));
    }
    assert_eq!(TaskRun::parse("fast"), None);
}

#[test]
fn a_long_loop_turn_submits_without_waiting_for_the_park() {
    // One task poll (no await, so no park): a push right after a submission
    // stays queued; a push after SUBMIT_AFTER of work submits both at once.
    let (queued_first, calls_first, queued_late, calls_late) =
        on_ring(UringSettings::plain(64), |_| async {
            let nop = || {
                io_uring::opcode::Nop::new()
                    .build()
                    .user_data(driver::IGNORED)
            };
            driver::with(|d| d.flush());
            let calls = || driver::with(|d| d.stats.uring_submit_calls.get());
            let before = calls();
            driver::with(|d| d.push(nop()));
            let queued_first = driver::with(|d| d.queued());
            let calls_first = calls() - before;
            let busy = std::time::Instant::now();
            while busy.elapsed() < 2 * driver::SUBMIT_AFTER {
                std::hint::spin_loop();
            }
            driver::with(|d| d.push(nop()));
            let queued_late = driver::with(|d| d.queued());
            (queued_first, calls_first, queued_late, calls() - before)
        });
    assert_eq!(
        (queued_first, calls_first),
        (1, 0),
        "a fresh push waits for the park"
    );
    assert_eq!(queued_late, 0, "the late push submitted what was queued");
    assert_eq!(calls_late, 1, "in one system call");
}
