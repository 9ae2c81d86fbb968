/**
 * THE haproxy.cfg for thingauth behind HAProxy, rendered from one template: the e2e tests
 * (test/e2e/proxy-protocol-haproxy.test.ts) run it against a real private HAProxy, and
 * docs/deployment.md "Behind HAProxy" shows it rendered with example addresses
 * (`renderHaproxyCfg(DOC_EXAMPLE)`; a test checks that the docs still hold exactly that text).
 *
 * Four frontends, all TCP mode, every backend connection starting with a PROXY v2 header:
 * - mqtt:             plain MQTT and TLS on the same port, passed through to thingauth's MQTT port;
 * - mqtts:            MQTT over TLS passed through to thingauth's MQTTS port (TLS and any client
 *                     certificate checked by thingauth);
 * - mqtts_offload:    TLS terminated by HAProxy, plain MQTT to thingauth's MQTT port;
 *                     send-proxy-v2-ssl tells thingauth the client used TLS;
 * - wss_offload:      the same for MQTT over WebSocket (to thingauth's WS port);
 * - device_https:     the device HTTPS listener, passed through.
 */

export interface HaproxyCfgInput {
  /** Address HAProxy's frontends bind ('*' for all). */
  bind: string;
  front: { mqtt: string; mqtts: string; mqttsOffload: string; wssOffload: string; deviceHttps: string };
  /** Where thingauth runs, and its listeners' ports. */
  thingauth: { host: string; mqtt: string; mqtts: string; ws: string; deviceHttps: string };
  /** PEM file with the certificate chain and key HAProxy presents when it terminates TLS. */
  certFile: string;
}

/** What docs/deployment.md shows. */
export const DOC_EXAMPLE: HaproxyCfgInput = {
  bind: '*',
  front: { mqtt: '1883', mqtts: '8883', mqttsOffload: '8884', wssOffload: '443', deviceHttps: '8443' },
  thingauth: { host: '10.0.0.10', mqtt: '1883', mqtts: '8883', ws: '8083', deviceHttps: '8443' },
  certFile: '/etc/haproxy/certs/thingauth.pem',
};

export function renderHaproxyCfg(c: HaproxyCfgInput): string {
  const server = (port: string, send: string) => `    server thingauth ${c.thingauth.host}:${port} ${send} check check-send-proxy`;
  return `global
    # maxconn: HAProxy derives it from the open-file limit; set it (and the limit) for your fleet.

defaults
    mode tcp
    timeout connect 5s
    # Longer than the longest MQTT keep-alive a device may ask for (1200 s) times 1.5.
    timeout client 1900s
    timeout server 1900s

# Plain MQTT (and TLS on the same port): passed through.
frontend mqtt
    bind ${c.bind}:${c.front.mqtt}
    default_backend thingauth_mqtt

backend thingauth_mqtt
${server(c.thingauth.mqtt, 'send-proxy-v2')}

# MQTT over TLS, passed through: thingauth does the TLS (needed for X.509 client certificates).
frontend mqtts
    bind ${c.bind}:${c.front.mqtts}
    default_backend thingauth_mqtts

backend thingauth_mqtts
${server(c.thingauth.mqtts, 'send-proxy-v2')}

# MQTT over TLS, terminated here: plain MQTT to thingauth, whose PROXY header's SSL TLV says
# the device used TLS (securemode=2, requireTls and registration over TLS hold).
frontend mqtts_offload
    bind ${c.bind}:${c.front.mqttsOffload} ssl crt ${c.certFile} ssl-min-ver TLSv1.2
    default_backend thingauth_mqtt_offload

backend thingauth_mqtt_offload
${server(c.thingauth.mqtt, 'send-proxy-v2-ssl')}

# MQTT over secure WebSocket, TLS terminated here, to thingauth's WS listener (counted as WSS).
frontend wss_offload
    bind ${c.bind}:${c.front.wssOffload} ssl crt ${c.certFile} ssl-min-ver TLSv1.2
    default_backend thingauth_ws_offload

backend thingauth_ws_offload
${server(c.thingauth.ws, 'send-proxy-v2-ssl')}

# Device HTTPS (registration, HTTP channel), passed through.
frontend device_https
    bind ${c.bind}:${c.front.deviceHttps}
    default_backend thingauth_device_https

backend thingauth_device_https
${server(c.thingauth.deviceHttps, 'send-proxy-v2')}
`;
}

/** A cluster of thingauth nodes behind one HAProxy (docs/deployment.md "Several nodes behind HAProxy"). */
export interface ClusterHaproxyCfgInput {
  bind: string;
  front: { mqtt: string; mqtts: string; deviceHttps: string };
  nodes: { name: string; host: string; mqtt: string; mqtts: string; deviceHttps: string; management: string }[];
  /** Health check period (HAProxy time, e.g. 1s). */
  checkInterval: string;
}

export const CLUSTER_DOC_EXAMPLE: ClusterHaproxyCfgInput = {
  bind: '*',
  front: { mqtt: '1883', mqtts: '8883', deviceHttps: '8443' },
  nodes: [1, 2, 3].map((i) => ({ name: `node-${i}`, host: `10.0.0.1${i}`, mqtt: '1883', mqtts: '8883', deviceHttps: '8443', management: '8080' })),
  checkInterval: '1s',
};

/**
 * Every node in every backend, least connections first. The health check asks each node's
 * `GET /healthz` on its management port (no PROXY header there): a draining node answers 503
 * and gets no new connection, a dead one fails the check; 2 failures take a node out, 2
 * successes bring it back. `on-marked-down shutdown-sessions` is not set: a draining node closes
 * its own sessions at a bounded rate instead of HAProxy cutting them all at once.
 */
export function renderClusterHaproxyCfg(c: ClusterHaproxyCfgInput): string {
  const backend = (name: string, port: (n: ClusterHaproxyCfgInput['nodes'][number]) => string) =>
    `backend ${name}
    balance leastconn
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter ${c.checkInterval} fall 2 rise 2
${c.nodes.map((n) => `    server ${n.name} ${n.host}:${port(n)} send-proxy-v2 check port ${n.management}`).join('\n')}
`;
  return `global
    # maxconn: HAProxy derives it from the open-file limit; set it (and the limit) for your fleet.

defaults
    mode tcp
    timeout connect 5s
    # Longer than the longest MQTT keep-alive a device may ask for (1200 s) times 1.5.
    timeout client 1900s
    timeout server 1900s
    # A connection to a node that died before the check saw it is tried on another node.
    retries 2
    option redispatch

frontend mqtt
    bind ${c.bind}:${c.front.mqtt}
    default_backend thingauth_mqtt

${backend('thingauth_mqtt', (n) => n.mqtt)}
frontend mqtts
    bind ${c.bind}:${c.front.mqtts}
    default_backend thingauth_mqtts

${backend('thingauth_mqtts', (n) => n.mqtts)}
frontend device_https
    bind ${c.bind}:${c.front.deviceHttps}
    default_backend thingauth_device_https

${backend('thingauth_device_https', (n) => n.deviceHttps)}`;
}
