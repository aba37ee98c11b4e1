//! MULTI / EXEC / DISCARD end to end: real `raftnode` processes spoken to
//! over raw RESP connections, as redis-py's default pipeline speaks.

mod support;

use raftnode::redis::resp::Reply;
use support::process::{bulk, error_starting, ok, ProcCluster, Resp};
use support::{wait_for, WAIT};

fn queued() -> Reply {
    Reply::Simple("QUEUED".into())
}

/// Sends `MULTI`, `commands` and `EXEC`; checks each command was queued and
/// returns EXEC's reply.
fn transaction(c: &mut Resp, commands: &[&[&str]]) -> Reply {
    assert_eq!(c.call(&["MULTI"]), ok());
    for command in commands {
        assert_eq!(c.call(command), queued(), "{command:?}");
    }
    c.call(&["EXEC"])
}

#[test]
fn multi_set_incr_get_exec_answers_each_command_in_order() {
    let cluster = ProcCluster::start(1);
    let leader = cluster.wait_for_leader();
    let mut c = cluster.client(leader);
    let reply = transaction(
        &mut c,
        &[
            &["SET", "n", "41"],
            &["INCR", "n"],
            &["GET", "n"],
            &["PING"],
            &["APPEND", "s", "ab"],
            &["CAS", "s", "ab", "cd"],
            &["DEL", "s", "none"],
            &["GET", "s"],
            &["ECHO", "hi"],
        ],
    );
    assert_eq!(
        reply,
        Reply::Array(vec![
            ok(),
            Reply::Integer(42),
            bulk("42"),
            Reply::Simple("PONG".into()),
            Reply::Integer(2),
            Reply::Integer(1),
            Reply::Integer(1),
            Reply::NullBulk,
            bulk("hi"),
        ])
    );
    assert_eq!(c.call(&["GET", "n"]), bulk("42"));

    // An error when a command runs is its own element; the others apply.
    let reply = transaction(
        &mut c,
        &[
            &["SET", "word", "x"],
            &["INCR", "word"],
            &["SET", "after", "1"],
        ],
    );
    let Reply::Array(replies) = reply else {
        panic!("EXEC answers an array: {reply:?}");
    };
    assert_eq!(replies[0], ok());
    error_starting(&replies[1], "ERR value is not an integer");
    assert_eq!(replies[2], ok());
    assert_eq!(c.call(&["GET", "after"]), bulk("1"));

    // An error while queuing aborts the whole transaction.
    assert_eq!(c.call(&["MULTI"]), ok());
    assert_eq!(c.call(&["SET", "never", "1"]), queued());
    error_starting(&c.call(&["INCR"]), "ERR wrong number of arguments");
    error_starting(&c.call(&["NOSUCH", "x"]), "ERR unknown command");
    error_starting(&c.call(&["INFO"]), "ERR INFO cannot be used inside MULTI");
    assert_eq!(c.call(&["SET", "never", "2"]), queued());
    error_starting(&c.call(&["EXEC"]), "EXECABORT Transaction discarded");
    assert_eq!(c.call(&["GET", "never"]), Reply::NullBulk);

    // DISCARD drops it; the transaction commands outside one say so.
    assert_eq!(c.call(&["MULTI"]), ok());
    error_starting(&c.call(&["MULTI"]), "ERR MULTI calls can not be nested");
    assert_eq!(c.call(&["SET", "never", "3"]), queued());
    assert_eq!(c.call(&["DISCARD"]), ok());
    assert_eq!(c.call(&["GET", "never"]), Reply::NullBulk);
    error_starting(&c.call(&["EXEC"]), "ERR EXEC without MULTI");
    error_starting(&c.call(&["DISCARD"]), "ERR DISCARD without MULTI");
    error_starting(&c.call(&["WATCH", "n"]), "ERR WATCH is not supported");
    assert_eq!(c.call(&["UNWATCH"]), ok());
    assert_eq!(transaction(&mut c, &[]), Reply::Array(vec![]));
}

#[test]
fn a_pipelined_burst_as_redis_py_sends_it() {
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let mut c = cluster.client(1);
    // MULTI, the commands and EXEC in one write, replies read afterwards.
    c.send_raw(
        b"*1\r\n$5\r\nMULTI\r\n\
          *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n\
          *2\r\n$4\r\nINCR\r\n$1\r\nk\r\n\
          *2\r\n$3\r\nGET\r\n$1\r\nk\r\n\
          *1\r\n$4\r\nEXEC\r\n",
    );
    assert_eq!(c.read(), ok());
    for _ in 0..3 {
        assert_eq!(c.read(), queued());
    }
    assert_eq!(
        c.read(),
        Reply::Array(vec![ok(), Reply::Integer(2), bulk("2")])
    );
}

#[test]
fn transactions_from_many_clients_never_interleave() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let port = cluster.nodes[&leader].client_port;
    const CLIENTS: i64 = 4;
    const EACH: i64 = 25;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Resp::connect(port).expect("connect");
                for _ in 0..EACH {
                    let reply = transaction(&mut c, &[&["INCR", "c"], &["INCR", "c"]]);
                    // Atomic: no other client's INCR falls between the two.
                    match reply {
                        Reply::Array(r) => match r[..] {
                            [Reply::Integer(a), Reply::Integer(b)] => assert_eq!(b, a + 1),
                            _ => panic!("EXEC answered {r:?}"),
                        },
                        other => panic!("EXEC answered {other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    let mut c = cluster.client(leader);
    assert_eq!(
        c.call(&["GET", "c"]),
        bulk(&(2 * CLIENTS * EACH).to_string())
    );
}

#[test]
fn exec_on_a_follower_is_moved_and_the_transaction_discarded() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = cluster.running().into_iter().find(|&id| id != leader);
    let mut f = cluster.client(follower.expect("a follower"));
    let reply = transaction(&mut f, &[&["SET", "foo", "1"], &["INCR", "foo"]]);
    let leader_addr = format!("127.0.0.1:{}", cluster.nodes[&leader].client_port);
    // 12182 is the hash slot of "foo", the first queued key.
    assert_eq!(
        error_starting(&reply, "MOVED"),
        format!("MOVED 12182 {leader_addr}")
    );
    error_starting(&f.call(&["EXEC"]), "ERR EXEC without MULTI");
    // Nothing was applied; a transaction that touches no key is answered
    // right there.
    assert_eq!(
        cluster.client(leader).call(&["GET", "foo"]),
        Reply::NullBulk
    );
    assert_eq!(
        transaction(&mut f, &[&["PING"], &["ECHO", "e"]]),
        Reply::Array(vec![Reply::Simple("PONG".into()), bulk("e")])
    );
}

#[test]
fn seq_exec_applies_a_transaction_once_and_it_survives_a_restart() {
    // One node: every process started binds ports that the support code
    // only found free a moment before, so the tests start no more than
    // they need.
    let mut cluster = ProcCluster::start(1);
    let leader = cluster.wait_for_leader();
    let mut c = cluster.client(leader);
    assert_eq!(c.call(&["CLIENT", "ID", "4242"]), ok());
    let send = |c: &mut Resp| {
        assert_eq!(c.call(&["MULTI"]), ok());
        assert_eq!(c.call(&["INCR", "counter"]), queued());
        assert_eq!(c.call(&["APPEND", "log", "x"]), queued());
        assert_eq!(c.call(&["GET", "counter"]), queued());
        c.call(&["SEQ", "1", "EXEC"])
    };
    let first = send(&mut c);
    assert_eq!(
        first,
        Reply::Array(vec![Reply::Integer(1), Reply::Integer(1), bulk("1")])
    );
    // The retry is answered from the session, not applied again.
    assert_eq!(send(&mut c), first);
    assert_eq!(c.call(&["GET", "counter"]), bulk("1"));
    assert_eq!(c.call(&["GET", "log"]), bulk("x"));
    let reply = transaction(&mut c, &[&["SET", "t", "a"], &["APPEND", "t", "b"]]);
    assert_eq!(reply, Reply::Array(vec![ok(), Reply::Integer(2)]));

    // kill -9; the state comes back from the log alone.
    cluster.kill(1);
    cluster.start_node(1);
    let leader = cluster.wait_for_leader();
    let mut c = cluster.client(leader);
    let read = |c: &mut Resp, key: &str| {
        wait_for(WAIT, &format!("{key} to be readable"), || {
            match c.call(&["GET", key]) {
                Reply::Error(text) if text.starts_with("TRYAGAIN") => None,
                other => Some(other),
            }
        })
    };
    assert_eq!(read(&mut c, "counter"), bulk("1"));
    assert_eq!(read(&mut c, "log"), bulk("x"));
    assert_eq!(read(&mut c, "t"), bulk("ab"));
    // The session came back too: the retry is still not applied again.
    assert_eq!(c.call(&["CLIENT", "ID", "4242"]), ok());
    assert_eq!(send(&mut c), first);
    assert_eq!(c.call(&["GET", "counter"]), bulk("1"));
}
