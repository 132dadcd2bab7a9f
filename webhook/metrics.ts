import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export function createWebhookMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sigil_webhook_' });
  return {
    registry,
    admissions: new Counter({
      name: 'sigil_webhook_admission_total',
      help: 'Pod admissions by result: injected, unchanged (already injected), skipped (not opted in), denied, malformed, error.',
      labelNames: ['result'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'sigil_webhook_admission_duration_seconds',
      help: 'Time to answer an AdmissionReview, including making sure the identity Certificate exists.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    certificateCreates: new Counter({
      name: 'sigil_webhook_certificate_creates_total',
      help: 'Identity Certificates the webhook ensured, by result: created, exists (verified its own), squatted (someone else holds the name), error.',
      labelNames: ['result'],
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'sigil_webhook_reviews_in_flight',
      help: 'AdmissionReviews being read or answered.',
      registers: [registry],
    }),
    refused: new Counter({
      name: 'sigil_webhook_requests_refused_total',
      help: 'Requests to /mutate-v1-pod refused before an answer: unauthenticated, forbidden, busy (the webhook is at its limit), slow (the body did not arrive in time), namespace (the namespace is at its share).',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
}
export type WebhookMetrics = ReturnType<typeof createWebhookMetrics>;
