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
        next();
      },
      (error: unknown) => next(connectionRefused(error instanceof AppError ? error : errors.invalidToken())),
    );
  });
  return io;
}

/** The error a client's connect_error sees: message plus `data: {code, status}`. */
function connectionRefused(error: AppError): Error {
  return Object.assign(new Error(error.message), { data: { code: error.code, status: error.status } });
}
