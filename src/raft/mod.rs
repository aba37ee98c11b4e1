pub mod core;
pub mod log;
pub mod message;
pub mod progress;
pub mod quorum;
pub mod read_only;
pub mod ready;
#[cfg(test)]
mod scenario;

pub use self::core::{CoreConfig, NotLeader, RaftCore, RoleKind};
pub use progress::{Progress, ProgressState};
pub use ready::{Ready, ReadyRead};
