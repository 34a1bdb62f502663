// @google-cloud/storage, unmodified: downloads objects with the credentials of an external_account
// file and prints one JSON object, each download's text or the ApiError as the client surfaces it.
// Usage: node storage.mjs '{"options": {<Storage options>}, "objects": [["my-bucket", "data.txt"]]}'
import {Storage} from '@google-cloud/storage';

const {options, objects} = JSON.parse(process.argv[2]);
const storage = new Storage({...options, retryOptions: {autoRetry: false}});
const out = {apiEndpoint: storage.apiEndpoint, downloads: []};
for (const [bucket, name] of objects) {
  try {
    const [data] = await storage.bucket(bucket).file(name).download();
    out.downloads.push({data: data.toString('utf8')});
  } catch (e) {
    out.downloads.push({error: {name: e.constructor.name, code: e.code, message: e.message,
                                reason: e.errors?.[0]?.reason}});
  }
}
console.log(JSON.stringify(out));
