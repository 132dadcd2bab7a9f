import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The operator's metrics, named in the style cert-manager users know. */
export function createOperatorMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sigil_operator_' });
  const labels = ['name', 'namespace', 'issuer_name', 'issuer_kind'] as const;
  return {
    registry,
    certificateExpiration: new Gauge({
      name: 'sigil_certificate_expiration_timestamp_seconds',
      help: "The notAfter of the certificate in the Certificate's Secret, as a Unix timestamp.",
      labelNames: labels,
      registers: [registry],
    }),
    certificateRenewal: new Gauge({
      name: 'sigil_certificate_renewal_timestamp_seconds',
      help: 'When the certificate will be renewed, as a Unix timestamp.',
      labelNames: labels,
      registers: [registry],
    }),
    certificateReady: new Gauge({
      name: 'sigil_certificate_ready_status',
      help: 'The Ready condition of the Certificate: 1 for the current status, 0 for the others.',
      labelNames: [...labels, 'condition'],
      registers: [registry],
    }),
    issuance: new Counter({
      name: 'sigil_issuance_total',
      help: 'Certificates issued, by result (success or the failure reason).',
      labelNames: ['result'],
      registers: [registry],
    }),
    issuanceDuration: new Histogram({
      name: 'sigil_issuance_duration_seconds',
      help: 'Time to generate a key, sign a certificate and write its Secret.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    podCertificateRequests: new Counter({
      name: 'sigil_pod_certificate_requests_total',
      help: 'PodCertificateRequests answered, by signer name and result (issued, denied, failed).',
      labelNames: ['signer', 'result'],
      registers: [registry],
    }),
    podCertificateLatency: new Histogram({
      name: 'sigil_pod_certificate_request_duration_seconds',
      help: 'From a PodCertificateRequest first seen to its Issued status written.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    caExpiration: new Gauge({
      name: 'sigil_ca_expiration_timestamp_seconds',
      help: 'The notAfter of the CA certificate an Issuer or ClusterIssuer signs with.',
      labelNames: ['name', 'namespace', 'kind'],
      registers: [registry],
    }),
    issuerReady: new Gauge({
      name: 'sigil_issuer_ready_status',
      help: 'The Ready condition of an Issuer or ClusterIssuer: 1 for the current status, 0 for the others.',
      labelNames: ['name', 'namespace', 'kind', 'condition'],
      registers: [registry],
    }),
    rotationPhase: new Gauge({
      name: 'sigil_issuer_rotation_phase',
      help: "1 for the phase of the issuer's CA rotation in progress (Prepare, Activate, Retire), 0 for the others.",
      labelNames: ['name', 'namespace', 'kind', 'phase'],
      registers: [registry],
    }),
    rotationPhaseSince: new Gauge({
      name: 'sigil_issuer_rotation_phase_start_timestamp_seconds',
      help: 'When the current phase of the CA rotation in progress began, as a Unix timestamp.',
      labelNames: ['name', 'namespace', 'kind'],
      registers: [registry],
    }),
    rotationLeaves: new Gauge({
      name: 'sigil_issuer_rotation_leaves',
      help: 'Leaves of the issuer signed by the old and by the new CA of the rotation in progress.',
      labelNames: ['name', 'namespace', 'kind', 'ca'],
      registers: [registry],
    }),
    rotationMargin: new Gauge({
      name: 'sigil_issuer_rotation_margin_seconds',
      help: "Time left to start a CA rotation that can finish before the CA expires: the CA's remaining life minus the longest leaf lifetime and two propagation delays. Below 0, rotate now.",
      labelNames: ['name', 'namespace', 'kind'],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'sigil_controller_queue_depth',
      help: "Keys waiting in a controller's work queue.",
      labelNames: ['controller'],
      registers: [registry],
    }),
    queueLatency: new Histogram({
      name: 'sigil_controller_queue_latency_seconds',
      help: 'How long a key waited in the queue before a worker took it.',
      labelNames: ['controller'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
      registers: [registry],
    }),
    reconcile: new Counter({
      name: 'sigil_controller_reconcile_total',
      help: 'Keys processed by a controller, by result (success, error).',
      labelNames: ['controller', 'result'],
      registers: [registry],
    }),
    apiRequests: new Counter({
      name: 'sigil_controller_api_requests_total',
      help: 'Requests the operator made to the Kubernetes API, by verb and resource.',
      labelNames: ['verb', 'resource'],
      registers: [registry],
    }),
    eventsDropped: new Counter({
      name: 'sigil_events_dropped_total',
      help: 'Normal Events not recorded because more were due per second than --event-qps allows (the status still says it).',
      labelNames: ['type', 'reason'],
      registers: [registry],
    }),
    cachedObjects: new Gauge({
      name: 'sigil_controller_cached_objects',
      help: "Objects held in the operator's informer caches, by resource.",
      labelNames: ['resource'],
      registers: [registry],
    }),
    leader: new Gauge({
      name: 'sigil_leader_election_is_leader',
      help: '1 while this replica holds the leader Lease.',
      registers: [registry],
    }),
  };
}

export type OperatorMetrics = ReturnType<typeof createOperatorMetrics>;
