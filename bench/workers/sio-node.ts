// The peer: one Socket.IO 4 node with @socket.io/redis-adapter. Each client joins the room
// user:<id> (from its handshake query); messages arrive through Redis from
// @socket.io/redis-emitter in the load generator; clients ack with socket.emit('ack', id).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { serve } from '../lib/ipc.js';

let acks = 0;
let io: Server | undefined;

serve({
  listen: async (a: { redisUrl: string }) => {
    const pub = new Redis(a.redisUrl);
    const sub = pub.duplicate();
    const http = createServer();
    io = new Server(http, { transports: ['websocket'], serveClient: false });
    io.adapter(createAdapter(pub, sub));
    io.on('connection', (socket) => {
      const user = socket.handshake.query.user;
      if (typeof user !== 'string') return socket.disconnect(true);
      void socket.join(`user:${user}`);
      socket.on('ack', () => acks++);
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    return { port: (http.address() as AddressInfo).port };
  },
  counts: () => ({ acks, sockets: io?.engine.clientsCount ?? 0 }),
});
