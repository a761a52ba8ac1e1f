// A real OpenID Provider (panva/oidc-provider) for the upstream sign-in tests.
// Usage: node provider.mjs   with env OP_PORT, OP_ISSUER, OP_CLIENTS (JSON array of client metadata).
// Prints "listening <issuer>" on stdout once it accepts connections.
// Accounts: any login name signs in (dev interactions); the claims are derived from it:
//   sub = login, preferred_username = login, name = "<Login> Upstream", email = login@upstream.test
import Provider from 'oidc-provider';

const port = Number(process.env.OP_PORT);
const issuer = process.env.OP_ISSUER;
const clients = JSON.parse(process.env.OP_CLIENTS || '[]');

const provider = new Provider(issuer, {
  clients,
  clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt'],
  claims: { openid: ['sub', 'sid'], profile: ['name', 'preferred_username'], email: ['email', 'email_verified'] },
  conformIdTokenClaims: false,
  cookies: { keys: ['appliance-e2e-not-a-secret'] },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  pkce: { required: () => false },
  // The appliance under test listens on loopback, which the provider's SSRF guard refuses
  // (jwks_uri of private_key_jwt clients, back-channel logout): lift it for these tests only.
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: id.charAt(0).toUpperCase() + id.slice(1) + ' Upstream',
          email: `${id}@upstream.test`,
          email_verified: true,
        };
      },
    };
  },
  // First-party test clients: consent is granted without a prompt.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile email');
    grant.addOIDCClaims(['name', 'preferred_username', 'email', 'email_verified']);
    await grant.save();
    return grant;
  },
});
provider.proxy = false;
provider.on('grant.error', (ctx, err) => console.error('grant.error', err.message, err.error_description || '', err.cause?.message || '', err.cause?.cause?.message || '', String(err.cause?.cause?.cause || '')));
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('backchannel.error', (client, err) => console.error('backchannel.error', client.clientId, err.message));
provider.on('backchannel.success', () => console.log('backchannel.success'));

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
