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
