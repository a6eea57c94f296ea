//! The reporter's HTTP endpoint (`--metrics ADDR`):
//!
//! * `GET /metrics`: Prometheus text exposition;
//! * `GET /samples`: the stored samples in the sample-log format, which is
//!   what `tailgate report --live` reads.
//!
//! Served by hyper on a one-thread tokio runtime of its own (thread
//! `tg-metrics`, never on the loop's core). Connections are served
//! concurrently, so a client that connects and says nothing, trickles its
//! request or sends garbage delays nobody else. Resources are bounded: at
//! most [`MAX_CONNS`] connections at once (more are closed at once and
//! counted), [`HEADER_TIMEOUT`] to send the request head, [`CONN_DEADLINE`]
//! for a whole connection, and no request body is read.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// Connections served at once; more are closed on accept and counted.
pub const MAX_CONNS: usize = 64;
/// Time a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Time one connection may live, however it behaves.
pub const CONN_DEADLINE: Duration = Duration::from_secs(30);

/// What the endpoint serves: the two bodies, rendered on request.
pub trait Content: Send + Sync + 'static {
    fn metrics(&self) -> Result<Vec<u8>, String>;
    fn samples(&self) -> Result<Vec<u8>, String>;
}

/// Endpoint counters.
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Connections accepted and served.
    pub served: AtomicU64,
    /// Connections closed on accept: [`MAX_CONNS`] were open.
    pub refused: AtomicU64,
    /// Connections ended by [`CONN_DEADLINE`].
    pub timed_out: AtomicU64,
}

/// An answer with a body.
pub fn response(status: StatusCode, ctype: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ctype));
    r
}

fn route(req: &Request<Incoming>, content: &dyn Content) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return response(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"GET /metrics or /samples\n".to_vec());
    }
    let body = match req.uri().path() {
        "/metrics" => content.metrics().map(|b| ("text/plain; version=0.0.4; charset=utf-8", b)),
        "/samples" => content.samples().map(|b| ("application/octet-stream", b)),
        _ => return response(StatusCode::NOT_FOUND, "text/plain", b"try /metrics or /samples\n".to_vec()),
    };
    match body {
        Ok((ctype, b)) => response(StatusCode::OK, ctype, b),
        Err(e) => response(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("{e}\n").into_bytes()),
    }
}

/// Bind the `--metrics` address (the error names the flag); port 0 lets
/// the OS pick one.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| std::io::Error::new(e.kind(), format!("--metrics {addr}: {e}")))
}

/// Serve `listener` until `stop` is set (checked every 100 ms). Runs on the
/// calling thread.
pub fn serve(listener: TcpListener, content: Arc<dyn Content>, stop: Arc<AtomicBool>, stats: Arc<EndpointStats>) {
    serve_with(listener, "metrics", stop, stats, move |req, _peer| route(req, &*content));
}

/// Serve `listener` with `route` (given each request and its peer's
/// address; no request body is read) until `stop` is set, with the bounds
/// above. `who` names the endpoint in warnings. Runs on the calling thread.
pub fn serve_with<F>(
    listener: TcpListener,
    who: &'static str,
    stop: Arc<AtomicBool>,
    stats: Arc<EndpointStats>,
    route: F,
) where
    F: Fn(&Request<Incoming>, SocketAddr) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let route = Arc::new(route);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::log_warn!("{who}: cannot start the HTTP runtime: {e}; it is not served");
            return;
        }
    };
    rt.block_on(async move {
        if let Err(e) = listener.set_nonblocking(true) {
            crate::log_warn!("{who}: {e}; it is not served");
            return;
        }
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                crate::log_warn!("{who}: {e}; it is not served");
                return;
            }
        };
        let open = Arc::new(AtomicUsize::new(0));
        while !stop.load(Ordering::Relaxed) {
            let accepted = match tokio::time::timeout(Duration::from_millis(100), listener.accept()).await {
                Err(_) => continue,
                Ok(Err(_)) => {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Ok(Ok(s)) => s,
            };
            let (accepted, peer) = accepted;
            if open.load(Ordering::Relaxed) >= MAX_CONNS {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                drop(accepted);
                continue;
            }
            open.fetch_add(1, Ordering::Relaxed);
            stats.served.fetch_add(1, Ordering::Relaxed);
            let (open, route, stats) = (open.clone(), route.clone(), stats.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let r = route(&req, peer);
                    async move { Ok::<_, std::convert::Infallible>(r) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(accepted), svc);
                if tokio::time::timeout(CONN_DEADLINE, conn).await.is_err() {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
}

/// GET `path` from `addr` (for `tailgate report --live` and tests), with
/// `timeout` for connecting and for each read.
pub fn http_get_with(addr: &str, path: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("--live {addr}: not an IP:PORT address ({e})"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("--live {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("--live {addr}: reading the answer: {e}"))?;
    parse_response(addr, path, &resp)
}

/// GET with a 10 s timeout.
pub fn http_get(addr: &str, path: &str) -> Result<Vec<u8>, String> {
    http_get_with(addr, path, Duration::from_secs(10))
}

/// The body of an HTTP/1.1 200 answer with a Content-Length (as this
/// endpoint sends), or why not. Never panics, whatever the bytes.
pub fn parse_response(addr: &str, path: &str, resp: &[u8]) -> Result<Vec<u8>, String> {
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or(format!("--live {addr}: not an HTTP answer"))?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let status = head.lines().next().unwrap_or("");
    if !(status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200")) {
        return Err(format!("--live {addr}{path}: {status}"));
    }
    let body = &resp[split + 4..];
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
    });
    match len {
        Some(n) if n != body.len() => {
            Err(format!("--live {addr}{path}: the answer was cut short ({} of {n} bytes)", body.len()))
        }
        _ => Ok(body.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Content for Fixed {
        fn metrics(&self) -> Result<Vec<u8>, String> {
            Ok(b"# TYPE x counter\nx_total 1\n".to_vec())
        }
        fn samples(&self) -> Result<Vec<u8>, String> {
            Ok(vec![7u8; 100_000])
        }
    }

    fn start() -> (String, Arc<AtomicBool>, Arc<EndpointStats>, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(EndpointStats::default());
        let (s2, st2) = (stop.clone(), stats.clone());
        let h = std::thread::spawn(move || serve(l, Arc::new(Fixed), s2, st2));
        (addr, stop, stats, h)
    }

    /// Regression: three idle connections delayed a scrape by 6 s (the old
    /// server read each in turn with a 2 s timeout). Ten idle connections,
    /// one that trickles half a request and one that sends garbage: the
    /// scrape still completes within 2 s (the client's own timeout).
    #[test]
    fn a_scrape_completes_while_ten_idle_connections_are_open() {
        let (addr, stop, stats, h) = start();
        let idle: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        let mut slow = TcpStream::connect(&addr).unwrap();
        slow.write_all(b"GET /metr").unwrap();
        let mut junk = TcpStream::connect(&addr).unwrap();
        junk.write_all(b"\x00\xff\x16\x03garbage\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..3 {
            let body = http_get_with(&addr, "/metrics", Duration::from_secs(2)).expect("scrape");
            assert!(String::from_utf8(body).unwrap().contains("x_total 1"));
        }
        let samples = http_get_with(&addr, "/samples", Duration::from_secs(2)).unwrap();
        assert_eq!(samples.len(), 100_000);
        let e = http_get_with(&addr, "/nope", Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("404"), "{e}");
        assert!(stats.served.load(Ordering::Relaxed) >= 17);
        drop((idle, slow, junk));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn connections_beyond_the_cap_are_closed_and_counted() {
        let (addr, stop, stats, h) = start();
        let idle: Vec<TcpStream> = (0..MAX_CONNS + 5).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stats.refused.load(Ordering::Relaxed) < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(stats.refused.load(Ordering::Relaxed), 5);
        drop(idle);
        // Once they are gone a scrape is served again.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut ok = false;
        while !ok && std::time::Instant::now() < deadline {
            ok = http_get_with(&addr, "/metrics", Duration::from_secs(2)).is_ok();
        }
        assert!(ok, "no scrape served after the idle connections closed");
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    proptest::proptest! {
        #[test]
        fn parse_response_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_response("a", "/samples", &b);
        }

        #[test]
        fn samples_bodies_never_panic_the_reader(
            head in "HTTP/1\\.1 200 OK\r\n(Content-Length: [0-9]{1,4}\r\n)?\r\n",
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        ) {
            let mut b = head.into_bytes();
            b.extend_from_slice(&body);
            if let Ok(body) = parse_response("a", "/samples", &b) {
                let _ = super::super::store::parse(&body);
            }
        }
    }
}
