import type { Server as HttpServer } from 'node:http';
import { Server } from 'socket.io';
import type { AuthService } from '../services/authService.js';
import { AppError, errors } from '../utils/errors.js';

/**
 * The Socket.IO server on the API's own port. The handshake must carry a JWT or an API key
 * (`auth: {token}`, or an Authorization header); anything else refuses the connection.
 */
export function createSocketServer(httpServer: HttpServer, options: { auth: AuthService; corsOrigins: readonly string[] }): Server {
  const io = new Server(httpServer, {
    path: '/socket.io',
    serveClient: false,
    cors: options.corsOrigins.length > 0 ? { origin: [...options.corsOrigins] } : undefined,
    // Generous buffer: a late subscriber may be sent thousands of replayed events at once.
    maxHttpBufferSize: 1_000_000,
  });
  coalesceWebSocketWrites(io);
  io.use((socket, next) => {
    const fromAuth = (socket.handshake.auth as { token?: unknown }).token;
    const header = socket.handshake.headers.authorization;
    const token = typeof fromAuth === 'string' ? fromAuth : typeof header === 'string' ? header.replace(/^Bearer\s+/i, '') : undefined;
    if (!token) {
      next(connectionRefused(errors.unauthenticated('Send a token: io(url, { auth: { token } }).')));
      return;
    }
    options.auth.authenticateToken(token).then(
      (principal) => {
        socket.data.principal = principal;
        socket.data.credential = token;
        next();
      },
      (error: unknown) => next(connectionRefused(error instanceof AppError ? error : errors.invalidToken())),
    );
  });
  return io;
}

interface RawTransport {
  name: string;
  send(packets: unknown[]): void;
  socket?: { _socket?: { cork?(): void; uncork?(): void } };
}

/**
 * engine.io writes each packet of a flush as its own WebSocket frame, each with its own system
 * call: a server streaming thousands of events a second to many sockets would spend most of
 * its time there. Corking the connection's TCP socket while engine.io writes a flush turns them
 * into one write. engine.io writes frames synchronously inside `send`, so the uncork right after
 * it sends them all. Where the internals differ (another engine.io version), nothing changes.
 */
function coalesceWebSocketWrites(io: Server): void {
  const corked = new WeakSet<RawTransport>();
  io.engine.on('connection', (connection: { transport: RawTransport; on(event: 'upgrade', listener: () => void): void }) => {
    const patch = () => {
      const transport = connection.transport;
      const tcp = transport.socket?._socket;
      if (transport.name !== 'websocket' || corked.has(transport) || typeof tcp?.cork !== 'function' || typeof tcp.uncork !== 'function') return;
      corked.add(transport);
      const send = transport.send.bind(transport);
      transport.send = (packets) => {
        if (packets.length < 2) {
          send(packets);
          return;
        }
        tcp.cork!();
        try {
          send(packets);
        } finally {
          tcp.uncork!();
        }
      };
    };
    patch();
    connection.on('upgrade', patch);
  });
}

/** The error a client's connect_error sees: message plus `data: {code, status}`. */
function connectionRefused(error: AppError): Error {
  return Object.assign(new Error(error.message), { data: { code: error.code, status: error.status } });
}
