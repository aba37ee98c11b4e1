//! The `raftnode` binary; everything lives in [`raftnode::cli`].

fn main() -> std::process::ExitCode {
    raftnode::cli::main()
}
