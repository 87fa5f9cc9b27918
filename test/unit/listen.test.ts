import { expect } from 'chai';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listenErrorMessage, StartupGate } from '../../src/listen.js';

function errno(code: string, message = code): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

describe('StartupGate', () => {
  it('holds a request that arrives before it opens, and answers it once open', async () => {
    const gate = new StartupGate();
    let handled = 0;
    const server = createServer(gate.wrap((_req, res) => {
      handled++;
      res.end('served');
    }));
    const arrived = new Promise<void>((resolve) => server.once('request', () => resolve()));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const answer = fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`).then((res) => res.text());
      await arrived;
      expect(handled).to.equal(0);
      gate.open();
      expect(await answer).to.equal('served');
      expect(handled).to.equal(1);
    } finally {
      server.close();
    }
  });
});

describe('listenErrorMessage()', () => {
  it('says in one line what failed and what to change', () => {
    expect(listenErrorMessage(errno('EADDRINUSE'), '127.0.0.1', 8080)).to.equal('Cannot listen on 127.0.0.1:8080: the address is already in use (EADDRINUSE), by another process; choose another with --port / --host (or PORT / HOST).');
    expect(listenErrorMessage(errno('EACCES'), '0.0.0.0', 80)).to.equal('Cannot listen on 0.0.0.0:80: permission denied (EACCES); ports below 1024 need privileges; choose another with --port / --host (or PORT / HOST).');
    expect(listenErrorMessage(errno('EADDRNOTAVAIL'), '::1', 1)).to.include('Cannot listen on [::1]:1: the address is not one of this machine\'s');
    expect(listenErrorMessage(errno('EMFILE', 'too many open files\nsecond line'), 'localhost', 9)).to.equal('Cannot listen on localhost:9: too many open files (EMFILE).');
  });
});
