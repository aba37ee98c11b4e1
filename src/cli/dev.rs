//! `raftnode dev`: a whole cluster on this machine's loopback, one child
//! process per node, in one command.

use super::args::{usage, Flags};
use super::error::{CliError, DevError};
use std::io::{self, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

const DEV_HELP: &str = "\
raftnode dev: run a local cluster on loopback in one command

Usage:
  raftnode dev [--nodes N] [--data-dir DIR] [--base-port P] [--max-clients N]

Node i serves clients on 127.0.0.1:(P+i-1) and peers on 127.0.0.1:(P+100+i-1).
Ctrl-C (or killing this process) stops every node. Running it again resumes
the same data (the first run forms the cluster; its membership is then kept
in the data dirs). A node removed with RAFT.NODE REMOVE exits, the others
keep running, and later runs leave it out; nodes added with RAFT.NODE ADD are
not started by dev. A node that fails (status 74 after its storage failed,
with a line naming the file; or any other error) stops the whole dev cluster,
which exits with status 1; once the cause is fixed, running dev again resumes.

Options:
  --nodes N        how many nodes [default: 3]
  --data-dir DIR   where their data goes, one dir per node [default: ./raftnode-dev]
  --base-port P    first client port [default: 7001]
  --max-clients N  clients each node serves at once [default: 10000]
  -h, --help       this help
";

/// The cluster's layout: how many nodes, where their data and ports are.
struct Layout {
    nodes: u64,
    dir: PathBuf,
    base: u16,
    /// `--max-clients`, passed on to every node.
    max_clients: Option<u64>,
}

impl Layout {
    fn client_port(&self, i: u64) -> u16 {
        self.base + (i - 1) as u16
    }

    fn raft_port(&self, i: u64) -> u16 {
        self.base + 100 + (i - 1) as u16
    }

    /// Left by a node that exited because it was removed from the cluster:
    /// its data dir would refuse to start, so later runs leave it out.
    fn removed_marker(&self, i: u64) -> PathBuf {
        self.dir.join(format!("node-{i}.removed"))
    }

    fn removed(&self, i: u64) -> bool {
        self.removed_marker(i).exists()
    }
}

/// `raftnode dev`: starts the nodes, prints how to reach them, and watches
/// them until killed.
pub(super) fn dev(args: &[String]) -> Result<ExitCode, CliError> {
    let Some(layout) = parse(args)? else {
        return Ok(ExitCode::SUCCESS);
    };
    check_size(&layout)?;
    for i in 1..=layout.nodes {
        for port in [layout.client_port(i), layout.raft_port(i)] {
            TcpListener::bind(("127.0.0.1", port))
                .map_err(|source| DevError::PortBusy { port, source })?;
        }
    }
    let mut children = start_nodes(&layout)?;
    print_banner(&layout);
    // Watch the nodes: if one dies, stop the rest rather than limp on (its
    // own last line, on the shared stderr, says why: after a storage
    // failure, which file; all the nodes share one disk here, so the others
    // would likely follow). A node that exits cleanly was removed from the
    // cluster (RAFT.NODE REMOVE): the others go on without it.
    loop {
        let mut left = None;
        for (i, (id, child)) in children.iter_mut().enumerate() {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => left = Some(i),
                Ok(Some(status)) => {
                    let id = *id;
                    stop_all(&mut children);
                    return Err(DevError::NodeExited { id, status }.into());
                }
                _ => {}
            }
        }
        if let Some(i) = left {
            let (id, _) = children.remove(i);
            let marker = layout.removed_marker(id);
            if let Err(e) = std::fs::write(&marker, "removed from the cluster\n") {
                eprintln!("raftnode: cannot write {}: {e}", marker.display());
            }
            println!("node {id} left the cluster (removed); the others keep running");
            let _ = io::stdout().flush();
            if children.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The layout from the flags; `None` for --help.
fn parse(args: &[String]) -> Result<Option<Layout>, CliError> {
    let flags = Flags::parse(
        args,
        &["--nodes", "--data-dir", "--base-port", "--max-clients"],
        &["-h", "--help"],
        false,
    )?;
    if flags.has("-h") || flags.has("--help") {
        print!("{DEV_HELP}");
        return Ok(None);
    }
    let nodes: u64 = flags.number("--nodes", 3)?;
    if !(1..=99).contains(&nodes) {
        return Err(usage("--nodes must be between 1 and 99"));
    }
    let base: u16 = flags.number("--base-port", 7001)?;
    if u32::from(base) + 100 + nodes as u32 > 65535 || base == 0 {
        return Err(usage(format!(
            "--base-port {base} leaves no room for {nodes} nodes"
        )));
    }
    let dir = PathBuf::from(flags.get("--data-dir").unwrap_or("./raftnode-dev"));
    let max_clients = match flags.get("--max-clients") {
        None => None,
        Some(_) => Some(flags.number("--max-clients", 0u64)?).filter(|&n| n > 0),
    };
    if flags.get("--max-clients").is_some() && max_clients.is_none() {
        return Err(usage("--max-clients must be at least 1"));
    }
    Ok(Some(Layout {
        nodes,
        dir,
        base,
        max_clients,
    }))
}

/// The membership is fixed by the first run: starting the same data with
/// another member count would make the nodes disagree on what a majority is.
fn check_size(layout: &Layout) -> Result<(), DevError> {
    let dir = &layout.dir;
    std::fs::create_dir_all(dir).map_err(|source| DevError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let marker = dir.join("dev-nodes");
    match std::fs::read_to_string(&marker) {
        Ok(text) if text.trim() != layout.nodes.to_string() => Err(DevError::OtherSize {
            path: dir.clone(),
            nodes: text.trim().to_string(),
        }),
        Ok(_) => Ok(()),
        Err(_) => std::fs::write(&marker, format!("{}\n", layout.nodes)).map_err(|source| {
            DevError::WriteMarker {
                path: marker,
                source,
            }
        }),
    }
}

/// Starts every node as a child `raftnode run` process. Each child's stdin is
/// a pipe from us, so they exit when we do, however we die.
fn start_nodes(layout: &Layout) -> Result<Vec<(u64, Child)>, DevError> {
    let exe = std::env::current_exe().map_err(DevError::NoBinary)?;
    let mut children: Vec<(u64, Child)> = Vec::new();
    for i in (1..=layout.nodes).filter(|&i| !layout.removed(i)) {
        match node_command(&exe, layout, i).spawn() {
            Ok(child) => children.push((i, child)),
            Err(source) => {
                stop_all(&mut children);
                return Err(DevError::StartNode { id: i, source });
            }
        }
    }
    Ok(children)
}

fn node_command(exe: &Path, layout: &Layout, i: u64) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .args(["--id", &i.to_string()])
        .arg("--data-dir")
        .arg(layout.dir.join(format!("node-{i}")))
        .args(["--raft-addr", &format!("127.0.0.1:{}", layout.raft_port(i))])
        .args([
            "--client-addr",
            &format!("127.0.0.1:{}", layout.client_port(i)),
        ])
        .args(["--cluster-id", "raftnode-dev", "--exit-on-stdin-eof"])
        .stdin(Stdio::piped());
    if let Some(max) = layout.max_clients {
        cmd.args(["--max-clients", &max.to_string()]);
    }
    for j in (1..=layout.nodes).filter(|&j| j != i) {
        cmd.args(["--peer", &format!("{j}=127.0.0.1:{}", layout.raft_port(j))]);
    }
    cmd
}

fn print_banner(layout: &Layout) {
    println!(
        "raftnode dev cluster: {} node(s), data in {}",
        layout.nodes,
        layout.dir.display()
    );
    for i in 1..=layout.nodes {
        println!(
            "  node {i}: clients 127.0.0.1:{}  peers 127.0.0.1:{}{}",
            layout.client_port(i),
            layout.raft_port(i),
            if layout.removed(i) { "  (removed)" } else { "" }
        );
    }
    let base = layout.base;
    println!(
        "Connect to any node (followers redirect writes with MOVED):\n  \
         nc 127.0.0.1 {base}      (then type: SET greeting hello)\n  \
         redis-cli -c -p {base}\n  \
         raftnode cli --addr 127.0.0.1:{base}\n\
         Ctrl-C stops every node."
    );
    let _ = io::stdout().flush();
}

fn stop_all(children: &mut Vec<(u64, Child)>) {
    for (_, child) in children.iter_mut() {
        let _ = child.kill();
    }
    for (_, child) in children.iter_mut() {
        let _ = child.wait();
    }
    children.clear();
}
