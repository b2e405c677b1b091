import nodemailer from 'nodemailer';
import type { Logger } from 'pino';

export interface MailMessage {
  to: string;
  subject: string;
  text: string;
}

/** Outgoing mail. Without SMTP configured, messages are logged for the operator to read. */
export interface Mailer {
  send(message: MailMessage): Promise<void>;
}

export function createMailer(options: { smtpUrl: string | null; from: string; logger: Logger }): Mailer {
  if (options.smtpUrl === null) {
    return {
      send: async (message) => {
        options.logger.info({ mail: message }, `mail to ${message.to} (no JOBLINE_SMTP_URL set, so logged): ${message.subject}`);
      },
    };
  }
  const transport = nodemailer.createTransport(options.smtpUrl);
  return {
    send: async (message) => {
      await transport.sendMail({ from: options.from, ...message });
    },
  };
}
