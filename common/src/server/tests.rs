//! Tests of the server's helpers.

use super::*;

#[test]
fn budget_grows_reservations_and_refuses_what_does_not_fit() {
    let budget = BodyBudget::new(100);
    let mut a = None;
    assert!(budget.reserve(&mut a, 60));
    assert!(budget.reserve(&mut a, 70));
    assert_eq!(budget.available(), 30);
    let mut b = None;
    assert!(!budget.reserve(&mut b, 31));
    assert!(budget.reserve(&mut b, 30));
    drop(a);
    assert_eq!(budget.available(), 70);
    // A body larger than the whole budget needs all of it, no more.
    drop(b);
    let mut c = None;
    assert!(budget.reserve(&mut c, 1000));
    assert_eq!(budget.available(), 0);
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[test]
fn progress_needs_a_rate_not_a_byte_now_and_then() {
    let c = ConnState::new(LOCAL, 0);
    // A request head at once is progress.
    c.moved(80, 5);
    assert_eq!(c.progress_ms.load(Ordering::Acquire), 5);
    // One byte every 250 ms is 4 bytes per second: never progress.
    for i in 1..=40 {
        c.moved(1, 5 + i * 250);
    }
    assert_eq!(c.progress_ms.load(Ordering::Acquire), 5);
    // A burst that makes up for the time since is.
    c.moved(4096, 10_005);
    assert_eq!(c.progress_ms.load(Ordering::Acquire), 10_005);
}

#[test]
fn the_connection_with_the_least_recent_progress_is_shed_first() {
    let tracker = Arc::new(Tracker::new(3, 0));
    let stalled = tracker.register(LOCAL);
    let working = tracker.register(LOCAL);
    let fresh = tracker.register(LOCAL);
    // `stalled` sent a request head long ago and has waited on its client since (a body
    // that stopped, a zero window); the server works on `working`'s request, which made
    // no progress for even longer; `fresh` just connected.
    stalled.state.progress_ms.store(1_000, Ordering::Release);
    working.state.progress_ms.store(0, Ordering::Release);
    fresh.state.progress_ms.store(5_000, Ordering::Release);
    let _stalled_request = RequestGuard::start(stalled.state.clone(), tracker.epoch);
    let busy = RequestGuard::start(working.state.clone(), tracker.epoch);
    let _working = Working::start(&busy);
    let fourth = tracker.register(LOCAL);
    assert!(stalled.state.shed.is_cancelled());
    assert!(!working.state.shed.is_cancelled());
    assert!(!fresh.state.shed.is_cancelled());
    // Next the one without progress for the longest that the server is not working on.
    fourth.state.progress_ms.store(6_000, Ordering::Release);
    let _fifth = tracker.register(LOCAL);
    assert!(fresh.state.shed.is_cancelled());
    assert!(!working.state.shed.is_cancelled());
    assert_eq!(tracker.conns.lock().unwrap().len(), 3);
    drop(stalled);
    assert_eq!(tracker.conns.lock().unwrap().len(), 3);
}

#[test]
fn one_address_is_capped_without_touching_others() {
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let tracker = Arc::new(Tracker::new(10, 2));
    let theirs = tracker.register(other);
    theirs.state.progress_ms.store(0, Ordering::Release);
    let first = tracker.register(LOCAL);
    first.state.progress_ms.store(1, Ordering::Release);
    let second = tracker.register(LOCAL);
    second.state.progress_ms.store(2, Ordering::Release);
    let _third = tracker.register(LOCAL);
    // The address's own stalest connection goes, not the older one of another address.
    assert!(first.state.shed.is_cancelled());
    assert!(!second.state.shed.is_cancelled());
    assert!(!theirs.state.shed.is_cancelled());
    assert_eq!(tracker.conns.lock().unwrap().len(), 3);
}

#[test]
fn waiting_for_a_body_is_not_the_server_working() {
    let c = Arc::new(ConnState::new(LOCAL, 0));
    let guard = RequestGuard::start(c.clone(), Instant::now());
    let working = Working::start(&guard);
    assert!(c.server_working());
    {
        let _waiting = WaitingOnClient::start(c.clone());
        assert!(!c.server_working());
    }
    assert!(c.server_working());
    drop(working);
    assert!(!c.server_working());
    assert_eq!(c.active.load(Ordering::Acquire), 1);
    drop(guard);
    assert_eq!(c.active.load(Ordering::Acquire), 0);
}

/// At the limit, a connection whose request has arrived but whose task has not run yet is not
/// taken for one that sent nothing: the server lets it read first. On a single-threaded
/// runtime the accept loop would otherwise accept all three connections below before the first
/// one's task runs, and close that one, the oldest.
#[tokio::test]
async fn a_request_that_has_arrived_is_read_before_a_connection_is_shed() {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // All three are connected, and the first has sent its request, before the server accepts.
    let mut asks = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    asks.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut third = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let security = WebSecurity {
        limits: Limits {
            max_connections: 2,
            // Far beyond the clients' own timeout: only shedding closes the silent one in time.
            read_timeout: Duration::from_secs(60),
            ..Limits::default()
        },
        ..WebSecurity::default()
    };
    let handler: Handler = Arc::new(|_| {
        Box::pin(async { http::Response::new(ResponseBody::from(Bytes::from_static(b"ok"))) })
    });
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, security, handler, shutdown.clone()));
    // The clients block: they run beside the server's single thread.
    let answers = tokio::task::spawn_blocking(move || {
        let read = |s: &mut std::net::TcpStream| {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 1024];
            match s.read(&mut buf) {
                Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => String::new(),
                Err(e) => format!("error: {e}"),
            }
        };
        let asked = read(&mut asks);
        let from_silent = read(&mut silent);
        third
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let from_third = read(&mut third);
        (asked, from_silent, from_third)
    })
    .await
    .unwrap();
    shutdown.cancel();
    server.await.unwrap().unwrap();
    let (asked, from_silent, from_third) = answers;
    assert!(
        asked.starts_with("HTTP/1.1 200"),
        "the request that had arrived: {asked:?}"
    );
    assert!(
        from_silent.is_empty(),
        "the connection that sent nothing was to be closed: {from_silent:?}"
    );
    assert!(
        from_third.starts_with("HTTP/1.1 200"),
        "the new connection: {from_third:?}"
    );
}
