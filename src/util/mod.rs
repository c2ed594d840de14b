//! Small utilities the layers above share: bodies in flight, a coarse
//! clock, the worker index, dates.

pub mod additions;
pub mod base64_256;
pub mod body;
pub mod coarse_clock;
pub mod date;
pub(crate) mod delegate_write;
pub mod duration;
pub mod head;
pub mod own_lines;
pub mod tokens;
pub mod worker;
