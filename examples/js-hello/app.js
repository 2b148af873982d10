// The hello handler in JavaScript: `GET /` answers `Hello, World!` as
// `text/plain; charset=utf-8`, every other request `404 Not Found`, exactly like the
// Rust hello in guest/. It exports wasi:http/incoming-handler itself rather than using
// StarlingMonkey's `fetch` event, so the status, headers and body are set as in the
// other hellos.

import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from 'wasi:http/types@0.2.12';

const encoder = new TextEncoder();

export const incomingHandler = {
  handle(request, responseOut) {
    const path = request.pathWithQuery();
    const isHello =
      request.method().tag === 'get' &&
      path !== undefined &&
      (path === '/' || path.startsWith('/?'));
    if (isHello) {
      respond(responseOut, 200, 'Hello, World!');
    } else {
      respond(responseOut, 404, 'Not Found');
    }
  },
};

function respond(responseOut, status, text) {
  const body = encoder.encode(text);
  const headers = Fields.fromList([
    ['content-type', encoder.encode('text/plain; charset=utf-8')],
    ['content-length', encoder.encode(String(body.length))],
  ]);
  const response = new OutgoingResponse(headers);
  response.setStatusCode(status);
  const outgoingBody = response.body();
  ResponseOutparam.set(responseOut, { tag: 'ok', val: response });
  const stream = outgoingBody.write();
  // The body is a few bytes, well under the 4 KiB a single write may carry.
  stream.blockingWriteAndFlush(body);
  stream[Symbol.dispose]();
  OutgoingBody.finish(outgoingBody, undefined);
}
