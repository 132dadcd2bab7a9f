import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

export function createWebhookMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sigil_webhook_' });
  return {
    registry,
    admissions: new Counter({
      name: 'sigil_webhook_admission_total',
      help: 'Pod admissions by result: injected, unchanged (already injected), denied, malformed, error.',
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
      help: 'Identity Certificates the webhook created (409 AlreadyExists counts as exists).',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}
export type WebhookMetrics = ReturnType<typeof createWebhookMetrics>;
