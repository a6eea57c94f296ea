//! The exit summary: the sessions' counters, the journal's, the FIX
//! sessions' and the exchange leg's, one line each.

use super::Orders;
use crate::proto::RejectReason;

impl Orders {
    pub(super) fn summary_text(&self) -> String {
        let c = &self.counters;
        let mut rej = String::new();
        for r in RejectReason::ALL {
            let n = c.rejects[*r as usize];
            if n > 0 {
                rej.push_str(&format!(" reject_{}={n}", r.label()));
            }
        }
        let mut line = format!(
            "orders: sessions={} logons={} messages_in={} orders_acked={} cancels_acked={} \
             heartbeats_out={} rejects={} framing_errors={} seq_gaps={} idle_timeouts={} shutdown_logouts={} \
             logons_refused={} kill_cancels={} kill_canceled={} kill_logouts={} kill_cancel_rejects={}{rej}",
            c.sessions,
            c.logons,
            c.messages_in,
            c.orders_acked,
            c.cancels_acked,
            c.heartbeats_out,
            c.rejects_total(),
            c.framing_errors,
            c.seq_gaps,
            c.idle_timeouts,
            c.shutdown_logouts,
            c.logons_refused,
            c.kill_cancels,
            c.kill_canceled,
            c.kill_logouts,
            c.kill_cancel_rejects
        );
        if let Some(j) = self.journal_line() {
            line.push('\n');
            line.push_str(&j);
        }
        if self.fix.cfg.port != 0 {
            let f = &self.fix.counters;
            line.push_str(&format!(
                "\nfix on port {} as {}: sessions={} logons={} messages_in={} session_rejects={} business_rejects={} \
                 framing_errors={} seq_too_low={} resend_requests_in={} resent={} gap_filled={} resend_unavailable={} \
                 resend_requests_out={} test_requests_out={} stored_while_away={} slots_reclaimed={} store_failed={}",
                self.fix.cfg.port,
                self.fix.cfg.comp_id.as_str(),
                self.fix.ids.len(),
                f.logons,
                f.messages_in,
                f.session_rejects,
                f.business_rejects,
                f.framing_errors,
                f.seq_too_low,
                f.resend_requests_in,
                f.resent,
                f.gap_filled,
                f.resend_unavailable,
                f.resend_requests_out,
                f.test_requests_out,
                f.stored_while_away,
                f.slots_reclaimed,
                f.store_failed
            ));
        }
        if let Some(up) = &self.up {
            let st = &up.client.stats;
            line.push_str(&format!(
                "\nupstream {} as {}: logins={} downs={} orders_sent={} cancels_sent={} fills={} cancel_rejects={} \
                 exchange_canceled={} refused={} resent_after_login={} delivered={} duplicates_skipped={} \
                 malformed={} invalid_transitions={} unknown_tokens={} reports_for_closed_sessions={} \
                 slow_client_aborts={} cancels_on_disconnect={} never_at_exchange={} lost={} live_orders={} next_seq={}",
                up.cfg.addr,
                up.cfg.username,
                c.upstream_logins,
                c.upstream_downs,
                c.orders_sent,
                c.cancels_sent,
                c.fills,
                c.cancel_rejects,
                c.exchange_canceled,
                c.upstream_refused,
                c.resent_after_login,
                st.delivered,
                st.duplicates_skipped,
                c.upstream_malformed,
                c.invalid_transitions,
                c.unknown_tokens,
                c.reports_for_closed_sessions,
                c.slow_client_aborts,
                c.cancels_on_disconnect,
                c.never_at_exchange,
                st.lost,
                self.table.orders.len(),
                up.client.next_seq()
            ));
        }
        line
    }
}
