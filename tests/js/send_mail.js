'use strict';
// Send one message with nodemailer and print the outcome as one JSON line.
//
//   node send_mail.js '{"port": 2525, "ca": "/path/ca.crt", "secure": false,
//                       "user": "alice", "pass": "pw", "method": "PLAIN"}'
//
// Used by tests/integration/test_tls_clients.py.  Keys: host (default
// 127.0.0.1), port, ca (PEM file the server certificate must chain to),
// servername (SNI and the name checked in the certificate), secure (implicit
// TLS), requireTLS (default true unless secure), user + pass, method
// (PLAIN, LOGIN, CRAM-MD5), accessToken (XOAUTH2 instead of a password),
// from, to (list), text.  Exit status 0 when the server accepted the message.

const fs = require('fs');
const nodemailer = require('nodemailer');

async function main() {
    const cfg = JSON.parse(process.argv[2]);
    const options = {
        host: cfg.host || '127.0.0.1',
        port: cfg.port,
        secure: Boolean(cfg.secure),
        requireTLS: cfg.requireTLS === undefined ? !cfg.secure : cfg.requireTLS,
        name: 'nodemailer.client.test',
        connectionTimeout: 10000,
        greetingTimeout: 10000,
        socketTimeout: 10000,
        tls: {
            ca: cfg.ca ? [fs.readFileSync(cfg.ca)] : undefined,
            servername: cfg.servername || 'localhost',
            minVersion: cfg.minVersion || 'TLSv1.2',
            maxVersion: cfg.maxVersion || 'TLSv1.3'
        }
    };
    if (cfg.accessToken) {
        options.auth = { type: 'OAuth2', user: cfg.user, accessToken: cfg.accessToken };
    } else if (cfg.user) {
        options.auth = { user: cfg.user, pass: cfg.pass };
        if (cfg.method) {
            options.authMethod = cfg.method;
        }
    }
    const transport = nodemailer.createTransport(options);
    try {
        const info = await transport.sendMail({
            from: cfg.from || 'sender@example.com',
            to: cfg.to || ['rcpt@example.com'],
            subject: 'nodemailer over TLS',
            text: cfg.text || 'Hello from nodemailer.'
        });
        process.stdout.write(JSON.stringify({ ok: true, accepted: info.accepted, rejected: info.rejected, response: info.response }) + '\n');
    } catch (err) {
        process.stdout.write(JSON.stringify({ ok: false, code: err.code, responseCode: err.responseCode, response: err.response, message: err.message }) + '\n');
        process.exitCode = 1;
    } finally {
        transport.close();
    }
}

main();
