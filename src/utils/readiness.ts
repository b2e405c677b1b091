/** A dependency the server needs to serve (the database, Redis, the engine): /health/ready runs each. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}
