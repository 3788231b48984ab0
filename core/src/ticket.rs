//! (in progress)
pub struct Ticket;
