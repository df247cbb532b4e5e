//! A closing listener answers what the kernel already accepted: it takes the backlog's
//! connections, then closes its socket, so later connections are refused rather than reset.

use futures_util::FutureExt;
use kiln_server::net::{ClosableListener, ListenerGate};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn closing_takes_the_backlog_then_refuses_new_connections() {
    let gate = ListenerGate::default();
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut listener = ClosableListener::new(socket, gate.clone()).unwrap();
    let addr = listener.local_addr();
    // Connected by the kernel while nobody accepts: the backlog.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    gate.close();
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.push(listener.accept().await);
    }
    // The backlog is empty: the socket closes and nothing is accepted any more.
    assert!(listener.accept().now_or_never().is_none());
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // The gate is closed once the connections taken while closing are done.
    assert!(gate.closed().now_or_never().is_none());
    drop(taken);
    assert!(gate.closed().now_or_never().is_some());
}
