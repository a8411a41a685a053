// magenta.js as a client of an exported hvae model: load the checkpoint folder from a URL with
// @magenta/music's MusicVAE, encode the given windows (encodeTensors gives mu) and decode the given
// latent vectors greedily (decodeTensors without a temperature). Prints one JSON line. Without
// "inputs" in the request it only decodes; with "chords" (a chord progression) both run under it; with
// "one_by_one" it encodes one window at a time (magenta.js finds a multi-instrument window's segment lengths
// only in a batch of one).
//   node encode_decode.js URL REQUEST.json     (NODE_PATH must hold @magenta/music)
const fs = require('fs');
const mvae = require('@magenta/music/node/music_vae');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [url, requestFile] = process.argv.slice(2);
  const request = JSON.parse(fs.readFileSync(requestFile, 'utf8'));
  const model = new mvae.MusicVAE(url);
  await model.initialize();
  const controlArgs = request.chords ? {chordProgression: request.chords} : undefined;
  let mu = null;
  if (request.inputs && request.one_by_one) {
    mu = [];
    for (const window of request.inputs) {
      mu.push((await (await model.encodeTensors(tf.tensor3d([window]), controlArgs)).array())[0]);
    }
  } else if (request.inputs) {
    mu = await (await model.encodeTensors(tf.tensor3d(request.inputs), controlArgs)).array();
  }
  const decoded = await model.decodeTensors(tf.tensor2d(request.z), undefined, controlArgs);
  console.log(JSON.stringify({mu: mu, decoded: await decoded.array()}));
  model.dispose();
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
