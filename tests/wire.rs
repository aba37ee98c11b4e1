//! The peer port refuses what it must: foreign clusters, wiped members, oversize
//! and undecodable frames — and keeps serving the real cluster.

mod support;

use raftnode::node::wire::{self, Hello, HelloReply};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::{wait_for, Cluster, WAIT};

fn connect(cluster: &Cluster, id: u64) -> TcpStream {
    let addr = cluster.node(id).raft_addr();
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

fn hello(stream: &mut TcpStream, cluster_id: &str, from: u64, to: u64) -> HelloReply {
    hello_as(stream, cluster_id, from, to, 0x5eed)
}

fn hello_as(
    stream: &mut TcpStream,
    cluster_id: &str,
    from: u64,
    to: u64,
    incarnation: u64,
) -> HelloReply {
    let hello = Hello {
        cluster_id: cluster_id.into(),
        from,
        to,
        client_addr: None,
        raft_addr: "127.0.0.1:1".into(),
        incarnation,
    };
    wire::write_frame(stream, &hello, wire::DEFAULT_MAX_FRAME).unwrap();
    wire::read_frame(stream, wire::DEFAULT_MAX_FRAME).unwrap()
}

fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("connection still open, read {n} bytes"),
    }
}

/// Refused: another cluster and a misaddressed hello. A member whose data
/// dir is not the one the cluster recorded for it (it was wiped — or this
/// node is behind, and it was removed and added back since) is heard, but
/// its votes and acknowledgements are not counted (shown end to end in
/// `tests/membership.rs`, `a_wiped_node_is_refused_until_removed_…`).
#[test]
fn handshake_refuses_other_clusters_and_hears_wiped_members() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_for_leader();
    let member = if leader == 2 { 3 } else { 2 };
    // The leader records every member's incarnation once it has met them.
    wait_for(WAIT, "the incarnations to be recorded", || {
        let m = cluster.node(1).membership();
        m.members
            .iter()
            .all(|m| m.incarnation.is_some())
            .then_some(())
    });
    let cases = [("other", 2, 1, "cluster"), ("test", 2, 3, "meant to reach")];
    for (cluster_id, from, to, why) in cases {
        let mut stream = connect(&cluster, 1);
        match hello(&mut stream, cluster_id, from, to) {
            HelloReply::Refused { reason } => assert!(reason.contains(why), "{reason}"),
            other => panic!("{other:?} for {cluster_id}/{from}->{to}"),
        }
        assert_closed(&mut stream);
    }
    let mut stream = connect(&cluster, 1);
    let wiped = hello_as(&mut stream, "test", member, 1, 0x0dd);
    assert!(matches!(wiped, HelloReply::Accepted { .. }), "{wiped:?}");
    // The real members were not disturbed, and the recorded data dir stays.
    let recorded = |c: &Cluster| {
        let m = c.node(1).membership();
        m.members
            .iter()
            .find(|m| m.id == member)
            .unwrap()
            .incarnation
    };
    let before = recorded(&cluster);
    cluster.set("k", "v");
    cluster.wait_replicated("k", "v");
    assert_eq!(recorded(&cluster), before);
    assert_ne!(before, Some(0x0dd));
}

#[test]
fn oversize_and_garbage_frames_close_only_that_connection() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_for_leader();
    let target = if leader == 1 { 2 } else { 1 };
    // An impostor claiming to be the leader sends a frame header of 1 GiB.
    let incarnation = cluster.node(leader).incarnation();
    let accepted = HelloReply::Accepted {
        incarnation: cluster.node(target).incarnation(),
    };
    let mut stream = connect(&cluster, target);
    assert_eq!(
        hello_as(&mut stream, "test", leader, target, incarnation),
        accepted
    );
    stream.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    assert_closed(&mut stream);
    // Then a well-sized frame that does not decode.
    let mut stream = connect(&cluster, target);
    assert_eq!(
        hello_as(&mut stream, "test", leader, target, incarnation),
        accepted
    );
    stream
        .write_all(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    assert_closed(&mut stream);
    // Garbage instead of a handshake.
    let mut stream = connect(&cluster, target);
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_closed(&mut stream);
    cluster.set("still", "works");
    cluster.wait_replicated("still", "works");
}

/// Nodes of the cluster that are not members (a joining node, a leader added
/// since) are accepted, but only 16 at once: the cluster id is no secret, and
/// each such connection may send full-size frames. The 17th is refused,
/// saying why; when one closes, another gets in; the members are unaffected.
#[test]
fn connections_from_non_members_are_capped() {
    let cluster = Cluster::new(3);
    cluster.wait_for_leader();
    let accepted = HelloReply::Accepted {
        incarnation: cluster.node(1).incarnation(),
    };
    let mut strangers: Vec<TcpStream> = (100..116)
        .map(|from| {
            let mut stream = connect(&cluster, 1);
            assert_eq!(hello_as(&mut stream, "test", from, 1, from), accepted);
            stream
        })
        .collect();
    let mut stream = connect(&cluster, 1);
    match hello_as(&mut stream, "test", 200, 1, 200) {
        HelloReply::Refused { reason } => assert!(reason.contains("not a member"), "{reason}"),
        other => panic!("the 17th non-member was not refused: {other:?}"),
    }
    assert_closed(&mut stream);
    cluster.set("k", "v");
    cluster.wait_replicated("k", "v");
    // One leaves: there is room again (once its thread has seen it go).
    drop(strangers.pop());
    wait_for(WAIT, "room for another non-member", || {
        let mut stream = connect(&cluster, 1);
        (hello_as(&mut stream, "test", 201, 1, 201) == accepted).then_some(stream)
    });
}
