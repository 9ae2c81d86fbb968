/**
 * Waiting for a device SDK object (the official Node SDK, the older aliyun-iot-device-sdk) to
 * log in: resolves on its 'connect', rejects on its 'error' or after `ms`, ending it then so
 * a refused SDK does not keep reconnecting behind the test.
 */
export interface SdkLike {
  on(event: string, cb: (arg?: unknown) => void): void;
  end(force?: boolean): void;
}

export function whenSdkConnected<T extends SdkLike>(device: T, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      device.end(true);
      reject(new Error('the SDK did not connect'));
    }, ms);
    device.on('connect', () => {
      clearTimeout(timer);
      resolve(device);
    });
    device.on('error', (err) => {
      clearTimeout(timer);
      device.end(true);
      reject(err instanceof Error ? err : new Error(String(err)));
    });
  });
}
