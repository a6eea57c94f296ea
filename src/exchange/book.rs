//! One symbol's limit order book, price-time priority: limit and market
//! orders, partial fills, cancels (whole or down to a smaller quantity) and
//! replaces. The exchange simulator's matching engine; test equipment, so
//! it may allocate, but it is bounded: at most `max_orders` rest.
//!
//! Prices are integers in the venue's units (OUCH: 1/10000 of a dollar).
//! An order is known by the id the caller gives it (the simulator's own,
//! unique per book). Matching reports each execution to a callback, resting
//! order first, in the order they happen.

use std::collections::{BTreeMap, HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Buy,
    Sell,
}

/// An order resting in the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resting {
    pub id: u64,
    pub side: Side,
    pub price: i64,
    pub qty: u32,
}

/// One execution: `qty` at `price` between the resting order and the
/// incoming one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execution {
    pub resting: u64,
    pub incoming: u64,
    pub price: i64,
    pub qty: u32,
    /// Leaves of each after this execution.
    pub resting_leaves: u32,
    pub incoming_leaves: u32,
    /// The book's match number, unique and increasing.
    pub match_number: u64,
}

/// What became of an incoming order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Rests with this many shares (possibly after executions).
    Rests(u32),
    /// Filled completely.
    Filled,
    /// What did not execute was canceled: a market or immediate-or-cancel
    /// order, this many shares.
    Canceled(u32),
    /// Refused before matching: the book is full, the id is in use, or the
    /// order is malformed (no quantity, a limit at a price <= 0).
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BookFull,
    DuplicateId,
    BadQuantity,
    BadPrice,
}

/// One symbol's book.
#[derive(Debug)]
pub struct Book {
    /// Price level -> ids in time priority. Bids keyed by negated price, so
    /// both maps iterate best first.
    bids: BTreeMap<i64, VecDeque<u64>>,
    asks: BTreeMap<i64, VecDeque<u64>>,
    orders: HashMap<u64, Resting>,
    max_orders: usize,
}

impl Book {
    pub fn new(max_orders: usize) -> Self {
        Book { bids: BTreeMap::new(), asks: BTreeMap::new(), orders: HashMap::new(), max_orders }
    }

    pub fn resting(&self, id: u64) -> Option<Resting> {
        self.orders.get(&id).copied()
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Best bid and best ask, if any.
    pub fn top(&self) -> (Option<i64>, Option<i64>) {
        (self.bids.keys().next().map(|p| -p), self.asks.keys().next().copied())
    }

    /// Match an incoming order. `price`: None for a market order. `rest`:
    /// whether what is left rests (a day limit order) or is canceled
    /// (immediate-or-cancel; a market order never rests). `next_match`: the
    /// venue's match number counter (unique across its books).
    #[allow(clippy::too_many_arguments)]
    pub fn enter(
        &mut self,
        id: u64,
        side: Side,
        price: Option<i64>,
        qty: u32,
        rest: bool,
        next_match: &mut u64,
        mut on_exec: impl FnMut(Execution),
    ) -> Outcome {
        if qty == 0 {
            return Outcome::Refused(Refusal::BadQuantity);
        }
        if price.is_some_and(|p| p <= 0) {
            return Outcome::Refused(Refusal::BadPrice);
        }
        if self.orders.contains_key(&id) {
            return Outcome::Refused(Refusal::DuplicateId);
        }
        let will_rest = rest && price.is_some();
        if will_rest && self.orders.len() >= self.max_orders {
            return Outcome::Refused(Refusal::BookFull);
        }
        let mut leaves = qty;
        while leaves > 0 {
            let opposite = match side {
                Side::Buy => &mut self.asks,
                Side::Sell => &mut self.bids,
            };
            let Some(mut level) = opposite.first_entry() else { break };
            let level_price = match side {
                Side::Buy => *level.key(),
                Side::Sell => -*level.key(),
            };
            let crosses = match (side, price) {
                (_, None) => true,
                (Side::Buy, Some(p)) => level_price <= p,
                (Side::Sell, Some(p)) => level_price >= p,
            };
            if !crosses {
                break;
            }
            let queue = level.get_mut();
            while leaves > 0 {
                let Some(&rid) = queue.front() else { break };
                let r = self.orders.get_mut(&rid).expect("a queued id rests");
                let q = leaves.min(r.qty);
                r.qty -= q;
                leaves -= q;
                let e = Execution {
                    resting: rid,
                    incoming: id,
                    price: level_price,
                    qty: q,
                    resting_leaves: r.qty,
                    incoming_leaves: leaves,
                    match_number: *next_match,
                };
                *next_match += 1;
                if r.qty == 0 {
                    queue.pop_front();
                    self.orders.remove(&rid);
                }
                on_exec(e);
            }
            if queue.is_empty() {
                level.remove();
            }
        }
        if leaves == 0 {
            return Outcome::Filled;
        }
        match price {
            Some(p) if rest => {
                self.insert(Resting { id, side, price: p, qty: leaves });
                Outcome::Rests(leaves)
            }
            _ => Outcome::Canceled(leaves),
        }
    }

    fn insert(&mut self, r: Resting) {
        let (map, key) = match r.side {
            Side::Buy => (&mut self.bids, -r.price),
            Side::Sell => (&mut self.asks, r.price),
        };
        map.entry(key).or_default().push_back(r.id);
        self.orders.insert(r.id, r);
    }

    fn unlink(&mut self, r: &Resting) {
        let (map, key) = match r.side {
            Side::Buy => (&mut self.bids, -r.price),
            Side::Sell => (&mut self.asks, r.price),
        };
        if let Some(q) = map.get_mut(&key) {
            q.retain(|&x| x != r.id);
            if q.is_empty() {
                map.remove(&key);
            }
        }
    }

    /// Cancel order `id` down to `keep` shares (0: all of it). Returns the
    /// shares canceled, or None if it does not rest. Reducing keeps the
    /// order's time priority.
    pub fn cancel(&mut self, id: u64, keep: u32) -> Option<u32> {
        let r = *self.orders.get(&id)?;
        if keep >= r.qty {
            return Some(0);
        }
        let canceled = r.qty - keep;
        if keep == 0 {
            self.unlink(&r);
            self.orders.remove(&id);
        } else if let Some(o) = self.orders.get_mut(&id) {
            o.qty = keep;
        }
        Some(canceled)
    }

    /// Replace resting order `id` with `new_id` at a new price and
    /// quantity: it loses its time priority and may execute. None if `id`
    /// does not rest (or `new_id` is taken).
    pub fn replace(
        &mut self,
        id: u64,
        new_id: u64,
        price: i64,
        qty: u32,
        next_match: &mut u64,
        on_exec: impl FnMut(Execution),
    ) -> Option<Outcome> {
        let r = *self.orders.get(&id)?;
        if new_id != id && self.orders.contains_key(&new_id) {
            return None;
        }
        self.unlink(&r);
        self.orders.remove(&id);
        Some(self.enter(new_id, r.side, Some(price), qty, true, next_match, on_exec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(b: &mut Book, id: u64, side: Side, price: Option<i64>, qty: u32) -> (Outcome, Vec<Execution>) {
        let mut v = Vec::new();
        let mut m = 1;
        let o = b.enter(id, side, price, qty, true, &mut m, |e| v.push(e));
        (o, v)
    }

    #[test]
    fn price_then_time_priority() {
        let mut b = Book::new(100);
        assert_eq!(run(&mut b, 1, Side::Sell, Some(101), 10).0, Outcome::Rests(10));
        assert_eq!(run(&mut b, 2, Side::Sell, Some(100), 10).0, Outcome::Rests(10));
        assert_eq!(run(&mut b, 3, Side::Sell, Some(100), 10).0, Outcome::Rests(10));
        assert_eq!(b.top(), (None, Some(100)));
        // A buy at 101 for 25 takes 2 (best price, first in time), then 3, then 5 of 1.
        let (o, ex) = run(&mut b, 4, Side::Buy, Some(101), 25);
        assert_eq!(o, Outcome::Filled);
        let got: Vec<(u64, i64, u32, u32)> = ex.iter().map(|e| (e.resting, e.price, e.qty, e.resting_leaves)).collect();
        assert_eq!(got, vec![(2, 100, 10, 0), (3, 100, 10, 0), (1, 101, 5, 5)]);
        assert_eq!(ex.iter().map(|e| e.match_number).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(ex.last().unwrap().incoming_leaves, 0);
        assert_eq!(b.resting(1).unwrap().qty, 5);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn a_limit_that_does_not_cross_rests_and_the_rest_of_a_partial_fill_rests() {
        let mut b = Book::new(100);
        run(&mut b, 1, Side::Buy, Some(99), 10);
        let (o, ex) = run(&mut b, 2, Side::Sell, Some(100), 5);
        assert_eq!((o, ex.len()), (Outcome::Rests(5), 0));
        let (o, ex) = run(&mut b, 3, Side::Sell, Some(99), 15);
        assert_eq!(o, Outcome::Rests(5));
        assert_eq!((ex[0].resting, ex[0].qty), (1, 10));
        assert_eq!(b.top(), (None, Some(99)));
    }

    #[test]
    fn market_and_immediate_orders_never_rest() {
        let mut b = Book::new(100);
        run(&mut b, 1, Side::Sell, Some(100), 10);
        let (o, _) = run(&mut b, 2, Side::Buy, None, 15);
        assert_eq!(o, Outcome::Canceled(5));
        assert!(b.is_empty());
        let mut ex = Vec::new();
        assert_eq!(b.enter(3, Side::Buy, Some(100), 5, false, &mut 1, |e| ex.push(e)), Outcome::Canceled(5));
        assert!(b.is_empty());
    }

    #[test]
    fn cancels_reduce_or_remove_and_keep_priority() {
        let mut b = Book::new(100);
        run(&mut b, 1, Side::Buy, Some(100), 10);
        run(&mut b, 2, Side::Buy, Some(100), 10);
        assert_eq!(b.cancel(1, 4), Some(6));
        assert_eq!(b.cancel(1, 9), Some(0), "cannot cancel up");
        let (_, ex) = run(&mut b, 3, Side::Sell, Some(100), 5);
        assert_eq!((ex[0].resting, ex[0].qty), (1, 4), "the reduced order kept its place");
        assert_eq!((ex[1].resting, ex[1].qty), (2, 1));
        assert_eq!(b.cancel(2, 0), Some(9));
        assert_eq!(b.cancel(2, 0), None);
        assert!(b.is_empty());
        assert_eq!(b.top(), (None, None));
    }

    #[test]
    fn a_replace_loses_priority_and_may_execute() {
        let mut b = Book::new(100);
        run(&mut b, 1, Side::Sell, Some(102), 10);
        run(&mut b, 2, Side::Buy, Some(100), 10);
        let mut ex = Vec::new();
        assert_eq!(b.replace(2, 20, 102, 4, &mut 1, |e| ex.push(e)), Some(Outcome::Filled));
        assert_eq!((ex[0].resting, ex[0].incoming, ex[0].qty), (1, 20, 4));
        assert_eq!(b.replace(2, 21, 100, 1, &mut 1, |_| {}), None, "the old id is gone");
    }

    #[test]
    fn refusals() {
        let mut b = Book::new(1);
        assert_eq!(run(&mut b, 1, Side::Buy, Some(100), 0).0, Outcome::Refused(Refusal::BadQuantity));
        assert_eq!(run(&mut b, 1, Side::Buy, Some(0), 1).0, Outcome::Refused(Refusal::BadPrice));
        assert_eq!(run(&mut b, 1, Side::Buy, Some(100), 1).0, Outcome::Rests(1));
        assert_eq!(run(&mut b, 1, Side::Buy, Some(100), 1).0, Outcome::Refused(Refusal::DuplicateId));
        assert_eq!(run(&mut b, 2, Side::Buy, Some(100), 1).0, Outcome::Refused(Refusal::BookFull));
        // A market order needs no room.
        assert_eq!(run(&mut b, 3, Side::Sell, None, 1).0, Outcome::Filled);
    }
}
