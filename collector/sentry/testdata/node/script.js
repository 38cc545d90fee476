// A real @sentry/node program for leitstand's Sentry receiver tests.
// Usage: node script.js <dsn> full|ratelimit
// full: an exception inside an instrumented HTTP request (user, request,
// tags, contexts, breadcrumbs, an attachment), a log, a check-in and a
// message; the request makes spans. ratelimit: three exceptions, each
// flushed, then a log and a check-in, so the test can count what the SDK
// still sends after a 429.
'use strict';

const Sentry = require('@sentry/node');

const [dsn, mode] = process.argv.slice(2);
Sentry.init({
  dsn,
  release: 'probe@1.0.0',
  environment: 'research',
  serverName: 'probe-host',
  sendDefaultPii: true,
  tracesSampleRate: 1.0,
  enableLogs: true,
  debug: process.env.SENTRY_DEBUG === '1',
});

// Required after init, so that the HTTP instrumentation is in place.
const http = require('http');

async function full() {
  const server = http.createServer((req, res) => {
    Sentry.setUser({ id: 'u-1', email: 'jane.doe@example.com', ip_address: '203.0.113.42', username: 'jdoe' });
    Sentry.setTag('customer_email', 'jane.doe@example.com');
    Sentry.setContext('billing', { iban: 'DE89370400440532013000', api_key: 'AKIAIOSFODNN7EXAMPLE' });
    Sentry.addBreadcrumb({ category: 'auth', message: 'login for jane.doe@example.com from 198.51.100.7', data: { password: 'hunter2' }, level: 'info' });
    Sentry.logger.info('user logged in from 198.51.100.7', { 'user.email': 'jane.doe@example.com' });
    Sentry.getCurrentScope().addAttachment({ filename: 'note.txt', data: 'contact jane.doe@example.com\nline2\n', contentType: 'text/plain' });
    Sentry.captureException(new Error('failed to charge card 4111111111111111 for jane.doe@example.com'));
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end('boom');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  await new Promise((resolve, reject) => {
    const body = JSON.stringify({ card: '4111 1111 1111 1111', password: 'hunter2' });
    const r = http.request({
      host: '127.0.0.1', port, method: 'POST', path: '/checkout?token=abc&email=jane.doe%40example.com',
      headers: {
        'content-type': 'application/json', 'content-length': Buffer.byteLength(body),
        cookie: 'sessionid=s3cr3t; theme=dark', authorization: 'Bearer abc.def.ghi', 'x-forwarded-for': '198.51.100.7',
        'user-agent': 'Mozilla/5.0 probe',
      },
    }, (res) => { res.resume(); res.on('end', resolve); });
    r.on('error', reject);
    r.end(body);
  });
  Sentry.captureCheckIn({ monitorSlug: 'nightly-job', status: 'ok', duration: 2 });
  Sentry.captureMessage('hello from probe, contact admin@example.org');
  await Sentry.flush(10000);
  server.close();
}

async function ratelimit() {
  for (let i = 1; i <= 3; i++) {
    Sentry.captureException(new Error(`rate limit probe ${i}`));
    await Sentry.flush(10000);
  }
  Sentry.logger.info('after the rate limit');
  Sentry.captureCheckIn({ monitorSlug: 'nightly-job', status: 'ok', duration: 1 });
  await Sentry.flush(10000);
}

(mode === 'ratelimit' ? ratelimit() : full())
  .then(() => Sentry.close(10000))
  .then(() => { console.log('done'); process.exit(0); })
  .catch((err) => { console.error(err); process.exit(1); });
