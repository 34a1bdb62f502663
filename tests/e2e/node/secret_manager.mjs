// @google-cloud/secret-manager, unmodified: accesses secret versions with the credentials of an
// external_account file, over gRPC (the default) or REST (`fallback: true`), and prints one JSON
// object: each payload, or the error as the client surfaces it (gRPC status code and details).
// Usage: node secret_manager.mjs '{"options": {<client options>}, "names": ["projects/.../versions/latest"]}'
import {SecretManagerServiceClient} from '@google-cloud/secret-manager';

const {options, names} = JSON.parse(process.argv[2]);
const client = new SecretManagerServiceClient(options);
const out = {apiEndpoint: client.apiEndpoint, universeDomain: client.universeDomain, versions: []};
for (const name of names) {
  try {
    const [version] = await client.accessSecretVersion({name}, {retry: null});
    out.versions.push({name: version.name, data: Buffer.from(version.payload.data).toString('utf8')});
  } catch (e) {
    out.versions.push({error: {name: e.constructor.name, code: e.code, details: e.details, message: e.message,
                               reason: e.reason ?? null}});
  }
}
await client.close();
console.log(JSON.stringify(out));
