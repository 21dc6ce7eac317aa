// s3rver with a SigV4 check in front of it, for tests/system/obj_s3.sh.
//
// s3rver 3.x accepts SigV4-signed requests but only checks the access key id ("Signature
// version 4 calculation is unimplemented" in its lib/middleware/authentication.js). This
// wrapper recomputes every request's AWS Signature Version 4 (header form, the payload hash as
// sent in x-amz-content-sha256) from the secret of the access key and answers 403
// SignatureDoesNotMatch when it differs, so the test proves that libcurl's CURLOPT_AWS_SIGV4
// signing is right, not merely present. The canonical query string is built as AWS builds it
// (each name and value percent-decoded, re-encoded with AWS's rules, sorted by name then value),
// not taken from the request as sent: a client that signs its query differently from how it sends
// it fails here as it would on AWS.
//
// s3rver 3.7.1 implements CreateMultipartUpload, UploadPart and CompleteMultipartUpload but not
// AbortMultipartUpload nor ListMultipartUploads, and completes an upload without checking the
// parts' ETags or sizes. This wrapper adds the two missing operations on s3rver's own upload
// directories (logging "abort-multipart UPLOADID" on stdout for each abort, and
// "complete-multipart UPLOADID N parts" for each completion) and makes Complete
// refuse a wrong ETag (InvalidPart) and a part other than the last below 5 MiB (EntityTooSmall),
// as S3 does.
//
//   node s3rver_sigv4.js S3RVER_MODULE_DIR DATA_DIR    (prints "port N" once listening)
'use strict';
const crypto = require('crypto');
const [moduleDir, dataDir] = process.argv.slice(2);
const S3rver = require(moduleDir);
const SECRETS = { S3RVER: 'S3RVER' }; // s3rver's built-in account

const hmac = (key, s) => crypto.createHmac('sha256', key).update(s).digest();
const sha256hex = s => crypto.createHash('sha256').update(s).digest('hex');

function deny(ctx, code, message) {
  ctx.status = 403;
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>${message}</Message></Error>`;
}

// AWS's UriEncode: every byte but A-Za-z0-9-_.~ as %XX, uppercase hex.
function awsEncode(s) {
  return Array.from(Buffer.from(s, 'utf8'))
    .map(b => (/[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b))
      ? String.fromCharCode(b)
      : '%' + b.toString(16).toUpperCase().padStart(2, '0')))
    .join('');
}

function canonicalQueryOf(query) {
  if (query === '') return '';
  return query.split('&')
    .filter(p => p !== '')
    .map(p => {
      const eq = p.indexOf('=');
      const name = eq < 0 ? p : p.slice(0, eq);
      const value = eq < 0 ? '' : p.slice(eq + 1);
      return [awsEncode(decodeURIComponent(name)), awsEncode(decodeURIComponent(value))];
    })
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([n, v]) => `${n}=${v}`)
    .join('&');
}

async function sigv4(ctx, next) {
  const auth = ctx.get('authorization');
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return deny(ctx, 'AccessDenied', 'SigV4 Authorization header required');
  const [, accessKey, date, region, signedHeaders, signature] = m;
  const secret = SECRETS[accessKey];
  if (secret === undefined) {
    return deny(ctx, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
  }
  const payloadHash = ctx.get('x-amz-content-sha256');
  const amzDate = ctx.get('x-amz-date');
  if (!payloadHash || !amzDate) return deny(ctx, 'AccessDenied', 'x-amz-content-sha256 and x-amz-date are required');
  const raw = ctx.req.url;
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const query = q < 0 ? '' : raw.slice(q + 1);
  let canonicalQuery;
  try {
    canonicalQuery = canonicalQueryOf(query);
  } catch (e) {
    return deny(ctx, 'AuthorizationQueryParametersError', 'Malformed query string');
  }
  const names = signedHeaders.split(';');
  if (!names.includes('host') || !names.includes('x-amz-date')) {
    return deny(ctx, 'AccessDenied', 'host and x-amz-date must be signed');
  }
  const canonicalHeaders = names
    .map(n => `${n}:${String(ctx.req.headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const canonicalRequest = [ctx.method, path, canonicalQuery, canonicalHeaders, signedHeaders,
    payloadHash].join('\n');
  const scope = `${date}/${region}/s3/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonicalRequest)].join('\n');
  let key = hmac('AWS4' + secret, date);
  key = hmac(key, region);
  key = hmac(key, 's3');
  key = hmac(key, 'aws4_request');
  const want = hmac(key, stringToSign).toString('hex');
  if (want !== signature) {
    return deny(ctx, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
  }
  ctx.state.sigv4Checked = true;
  return next();
}

// s3rver 3.7.1's FilesystemStore.putObject answers once its hashing transform has finished,
// before the file write stream has flushed, so a GET or HEAD right after a PUT that overwrites
// a large object can see a short or empty file (real S3 is read-after-write consistent). Wait
// for the file to be written.
const path = require('path');
const fs = require('fs');
const { Transform, pipeline } = require('stream');
const FilesystemStore = require(path.join(moduleDir, 'lib', 'stores', 'filesystem'));
FilesystemStore.prototype.putObject = async function putObject(object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  await fs.promises.mkdir(path.dirname(objectPath), { recursive: true });
  const md5 = crypto.createHash('md5');
  let size = 0;
  const counter = new Transform({
    transform(chunk, encoding, callback) {
      md5.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  const source = Buffer.isBuffer(object.content)
    ? require('stream').Readable.from([object.content])
    : object.content;
  await new Promise((resolve, reject) =>
    pipeline(source, counter, fs.createWriteStream(objectPath), err => (err ? reject(err) : resolve())));
  const digest = md5.digest('hex');
  await this.putMetadata(object.bucket, object.key, object.metadata, digest);
  return { size, md5: digest };
};

// The multipart operations s3rver lacks, on its own upload directories
// (DATA_DIR/BUCKET/._S3rver_uploads/UPLOADID/{key,metadata,1,1.md5,...}).
const S3Error = require(path.join(moduleDir, 'lib', 'models', 'error'));
const xmlEscape = s => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const uploadsDir = bucket =>
  FilesystemStore.prototype.getResourcePath.call({ rootDirectory: dataDir }, bucket, undefined, 'uploads');

async function multipartExtras(ctx, next) {
  const m = /^\/([^/?]+)(\/[^?]*)?$/.exec(ctx.path);
  if (!m) return next();
  const bucket = m[1];
  const hasKey = m[2] !== undefined && m[2] !== '/';
  if (ctx.method === 'DELETE' && hasKey && 'uploadId' in ctx.query) {
    const id = String(ctx.query.uploadId);
    const dir = path.join(uploadsDir(bucket), id);
    if (!/^[0-9a-f]+$/.test(id) || !fs.existsSync(dir)) {
      ctx.status = 404;
      ctx.type = 'application/xml';
      ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code>' +
        '<Message>The specified upload does not exist.</Message></Error>';
      return;
    }
    await fs.promises.rm(dir, { recursive: true, force: true });
    console.log(`abort-multipart ${id}`);
    ctx.status = 204;
    return;
  }
  if (ctx.method === 'GET' && !hasKey && 'uploads' in ctx.query) {
    // ListMultipartUploads as AWS answers it: sorted by key, then upload id; prefix,
    // key-marker and upload-id-marker honoured; <Initiated> is the mtime of the upload's key
    // file (tests backdate it). Pages hold LIST_UPLOADS_PAGE uploads, far fewer than AWS's
    // 1000, so that every listing of a few uploads is paginated.
    const LIST_UPLOADS_PAGE = 2;
    const dir = uploadsDir(bucket);
    const prefix = String(ctx.query.prefix || '');
    const keyMarker = String(ctx.query['key-marker'] || '');
    const idMarker = String(ctx.query['upload-id-marker'] || '');
    const ids = fs.existsSync(dir) ? await fs.promises.readdir(dir) : [];
    let all = [];
    for (const id of ids) {
      const file = path.join(dir, id, 'key');
      const key = await fs.promises.readFile(file, 'utf8').catch(() => null);
      if (key === null || !key.startsWith(prefix)) continue;
      const { mtime } = await fs.promises.stat(file);
      all.push({ key, id, initiated: mtime.toISOString() });
    }
    all.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (keyMarker) all = all.filter(u => u.key > keyMarker || (u.key === keyMarker && idMarker && u.id > idMarker));
    const page = all.slice(0, LIST_UPLOADS_PAGE);
    const truncated = all.length > page.length;
    const last = page[page.length - 1];
    ctx.status = 200;
    ctx.type = 'application/xml';
    ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult>' +
      `<Bucket>${xmlEscape(bucket)}</Bucket><Prefix>${xmlEscape(prefix)}</Prefix>` +
      page.map(u => `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${xmlEscape(u.id)}</UploadId>` +
        `<Initiated>${u.initiated}</Initiated></Upload>`).join('') +
      (truncated ? `<NextKeyMarker>${xmlEscape(last.key)}</NextKeyMarker>` +
        `<NextUploadIdMarker>${xmlEscape(last.id)}</NextUploadIdMarker>` : '') +
      `<IsTruncated>${truncated}</IsTruncated></ListMultipartUploadsResult>`;
    console.log(`list-multipart prefix=${prefix} key-marker=${keyMarker} -> ${page.length}${truncated ? '+' : ''}`);
    return;
  }
  return next();
}

const putObjectMultipart = FilesystemStore.prototype.putObjectMultipart;
FilesystemStore.prototype.putObjectMultipart = async function checkedPutObjectMultipart(bucket, uploadId, parts) {
  const dir = path.join(this.getResourcePath(bucket, undefined, 'uploads'), uploadId);
  const sorted = [...parts].sort((a, b) => a.number - b.number);
  for (const [i, part] of sorted.entries()) {
    const file = path.join(dir, String(part.number));
    const md5 = await fs.promises.readFile(`${file}.md5`, 'utf8').catch(() => null);
    if (md5 === null || md5 !== part.etag) {
      throw new S3Error('InvalidPart', `Part ${part.number} is missing or its ETag does not match.`);
    }
    const { size } = await fs.promises.stat(file);
    if (i < sorted.length - 1 && size < 5 * 1024 * 1024) {
      throw new S3Error('EntityTooSmall', `Part ${part.number} is ${size} bytes, below the 5 MiB minimum.`);
    }
  }
  const result = await putObjectMultipart.call(this, bucket, uploadId, parts);
  console.log(`complete-multipart ${uploadId} ${parts.length} parts`);
  return result;
};

const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dataDir });
server.middleware.unshift(sigv4, multipartExtras);
server.run().then(addr => {
  console.log(`port ${addr.port}`);
}, err => {
  console.error(err);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
