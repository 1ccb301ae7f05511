package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/ratelimit"
)

var (
	auditQueueDepth    = prometheus.NewDesc("moat_audit_queue_depth", "Audit events waiting for the chain goroutine.", nil, nil)
	auditQueueCapacity = prometheus.NewDesc("moat_audit_queue_capacity", "Size of the audit queue (audit.queue_size).", nil, nil)
	auditRecorded      = prometheus.NewDesc("moat_audit_events_recorded_total", "Audit events accepted into the queue.", nil, nil)
	auditDropped       = prometheus.NewDesc("moat_audit_events_dropped_total", "Audit events refused because the queue was full or the auditor closed.", nil, nil)
	sinkLabels         = []string{"sink", "type"}
	sinkMemoryDepth    = prometheus.NewDesc("moat_audit_sink_memory_depth", "Audit events waiting in the sink's memory queue.", sinkLabels, nil)
	sinkSpoolBytes     = prometheus.NewDesc("moat_audit_sink_spool_bytes", "Bytes in the sink's on-disk spool.", sinkLabels, nil)
	sinkSpoolEvents    = prometheus.NewDesc("moat_audit_sink_spool_events", "Audit events in the sink's spool not yet delivered.", sinkLabels, nil)
	sinkDelivered      = prometheus.NewDesc("moat_audit_sink_delivered_total", "Audit events the sink accepted.", sinkLabels, nil)
	sinkFailures       = prometheus.NewDesc("moat_audit_sink_failures_total", "Failed delivery attempts to the sink (each is retried).", sinkLabels, nil)
	sinkRejected       = prometheus.NewDesc("moat_audit_sink_rejected_total", "Audit events dropped because the sink refused them for good.", sinkLabels, nil)
	sinkDropped        = prometheus.NewDesc("moat_audit_sink_dropped_total", "Audit events dropped because the spool was full, could not be written, or lost a segment.", sinkLabels, nil)
	sinkDiscarded      = prometheus.NewDesc("moat_audit_sink_spool_discarded_bytes_total", "Bytes cut from the spool as torn or corrupt after a crash.", sinkLabels, nil)
)

// auditCollector reads an auditor's Stats once per scrape.
type auditCollector struct{ stats func() audit.Stats }

// AuditCollector returns a collector of the auditor's counters (queue depth,
// drops, and per sink: spool size, deliveries, failures, drops). stats is
// called once per scrape; pass (*audit.Auditor).Stats.
func AuditCollector(stats func() audit.Stats) prometheus.Collector { return auditCollector{stats} }

func (c auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{auditQueueDepth, auditQueueCapacity, auditRecorded, auditDropped,
		sinkMemoryDepth, sinkSpoolBytes, sinkSpoolEvents, sinkDelivered, sinkFailures, sinkRejected, sinkDropped, sinkDiscarded} {
		ch <- d
	}
}

func (c auditCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	ch <- prometheus.MustNewConstMetric(auditQueueDepth, gauge, float64(s.QueueDepth))
	ch <- prometheus.MustNewConstMetric(auditQueueCapacity, gauge, float64(s.QueueCapacity))
	ch <- prometheus.MustNewConstMetric(auditRecorded, counter, float64(s.Recorded))
	ch <- prometheus.MustNewConstMetric(auditDropped, counter, float64(s.Dropped))
	for _, k := range s.Sinks {
		ch <- prometheus.MustNewConstMetric(sinkMemoryDepth, gauge, float64(k.MemoryDepth), k.Name, k.Type)
		ch <- prometheus.MustNewConstMetric(sinkSpoolBytes, gauge, float64(k.SpoolBytes), k.Name, k.Type)
		ch <- prometheus.MustNewConstMetric(sinkSpoolEvents, gauge, float64(k.SpoolEvents), k.Name, k.Type)
		ch <- prometheus.MustNewConstMetric(sinkDelivered, counter, float64(k.Delivered), k.Name, k.Type)
		ch <- prometheus.MustNewConstMetric(sinkFailures, counter, float64(k.Failures), k.Name, k.Type)
		ch <- prometheus.MustNewConstMetric(sinkRejected, counter, float64(k.Rejected), k.Name, k.Type)
		ch <- prometheus.MustNewConstMetric(sinkDropped, counter, float64(k.Dropped), k.Name, k.Type)
		ch <- prometheus.MustNewConstMetric(sinkDiscarded, counter, float64(k.SpoolDiscardedBytes), k.Name, k.Type)
	}
}

var (
	guardRemoteErrors = prometheus.NewDesc("moat_ratelimit_remote_errors_total", "Calls to the shared rate-limit store (Redis) that failed or ran past the budget.", []string{"store"}, nil)
	guardBreakerOpen  = prometheus.NewDesc("moat_ratelimit_breaker_open_total", "Checks not sent to the shared store because its circuit breaker was open.", []string{"store"}, nil)
	guardFallbacks    = prometheus.NewDesc("moat_ratelimit_fallbacks_total", "Checks decided without the shared store, by the on_unavailable policy applied.", []string{"store", "policy"}, nil)
)

// guardCollector reads a guarded rate-limit store's GuardStats once per scrape.
type guardCollector struct {
	store string
	stats func() ratelimit.GuardStats
}

// GuardCollector returns a collector of a guarded (Redis-backed) rate-limit
// store's counters, labelled store=name. stats is called once per scrape;
// pass (*ratelimit.Guarded).Stats. Register one per store name.
func GuardCollector(name string, stats func() ratelimit.GuardStats) prometheus.Collector {
	return guardCollector{name, stats}
}

func (c guardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- guardRemoteErrors
	ch <- guardBreakerOpen
	ch <- guardFallbacks
}

func (c guardCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(guardRemoteErrors, prometheus.CounterValue, float64(s.RemoteErrors), c.store)
	ch <- prometheus.MustNewConstMetric(guardBreakerOpen, prometheus.CounterValue, float64(s.BreakerOpen), c.store)
	ch <- prometheus.MustNewConstMetric(guardFallbacks, prometheus.CounterValue, float64(s.FailClosed), c.store, "fail_closed")
	ch <- prometheus.MustNewConstMetric(guardFallbacks, prometheus.CounterValue, float64(s.FailOpen), c.store, "fail_open")
	ch <- prometheus.MustNewConstMetric(guardFallbacks, prometheus.CounterValue, float64(s.LocalFallbacks), c.store, "local")
}
