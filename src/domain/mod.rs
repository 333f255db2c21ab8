//! Ids, money, events and the pure rules of each aggregate. Nothing here
//! does I/O.

pub mod error;
pub mod events;
pub mod ids;
pub mod money;
pub mod posting;
pub mod text;
