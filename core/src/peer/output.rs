//! The peer's outbox: the queue of actions the driver drains, and the counters that name
//! what the driver reports back (tokens for reads, stores, fetches and writes; connection
//! ids). One value shared by every part, so that actions keep the order the parts emit them
//! in and no two requests ever share a token.

use std::collections::VecDeque;

use super::action::{PeerAction, PeerNotice};
use crate::ids::ConnId;
use crate::wire::Message;

pub(crate) struct Output {
    actions: VecDeque<PeerAction>,
    next_token: u64,
    next_conn_id: u64,
}

impl Output {
    pub(crate) fn new() -> Output {
        Output {
            actions: VecDeque::new(),
            next_token: 1,
            next_conn_id: 1,
        }
    }

    pub(crate) fn pop(&mut self) -> Option<PeerAction> {
        self.actions.pop_front()
    }

    pub(crate) fn push(&mut self, action: PeerAction) {
        self.actions.push_back(action);
    }

    pub(crate) fn send(&mut self, conn: ConnId, message: Message) {
        self.actions.push_back(PeerAction::Send { conn, message });
    }

    pub(crate) fn notify(&mut self, notice: PeerNotice) {
        self.actions.push_back(PeerAction::Notify(notice));
    }

    pub(crate) fn next_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    /// Tracker and peer connections draw from one sequence.
    pub(crate) fn new_conn_id(&mut self) -> ConnId {
        let id = ConnId(self.next_conn_id);
        self.next_conn_id += 1;
        id
    }
}
