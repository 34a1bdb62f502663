// google-auth-library, unmodified: Application Default Credentials from an external_account file,
// as a workload runs it. Prints one JSON object: the client's class, the access token, the project
// the client's getProjectId() finds, and the status and body of each authorised GET the client makes itself.
// Usage: node google_auth.mjs '{"keyFilename": "cred.json", "get": ["https://..."]}'
import {GoogleAuth} from 'google-auth-library';

const {keyFilename, get = []} = JSON.parse(process.argv[2]);
const failure = (e) => ({name: e.name, message: e.message, status: e.response?.status ?? e.status,
                         body: e.response?.data});
const auth = new GoogleAuth({keyFilename, scopes: ['https://www.googleapis.com/auth/cloud-platform']});
const out = {};
try {
  const client = await auth.getClient();
  out.client = client.constructor.name;
  out.serviceAccount = client.getServiceAccountEmail?.() ?? null;
  out.token = (await client.getAccessToken()).token;
  // The external account's own lookup (Cloud Resource Manager, by the audience's project number).
  // GoogleAuth.getProjectId() would first run `gcloud config config-helper` and ask the GCE metadata
  // server at 169.254.169.254, which a test on this machine must not.
  try {
    out.projectId = await client.getProjectId();
  } catch (e) {
    out.projectId = {error: failure(e)};
  }
  out.get = [];
  for (const url of get) {
    const r = await client.request({url, validateStatus: () => true});
    out.get.push({status: r.status, body: r.data});
  }
} catch (e) {
  out.error = failure(e);
}
console.log(JSON.stringify(out));
