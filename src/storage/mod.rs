mod disk;
pub use disk::*;
