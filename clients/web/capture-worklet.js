// Microphone capture: resample the AudioContext's audio to the session's input rate with a
// windowed-sinc low-pass interpolator, convert to PCM16 little-endian, and post 20 ms chunks
// (an ArrayBuffer each, transferred) to the page, with the chunk's peak level for the meter.
//
// processorOptions: {targetRate: 16000 | 24000 | 48000, chunkMs: 20}

const HALF_WIDTH = 16; // kernel half-width in input samples (32 taps)
const PHASES = 256; // the kernel is tabulated for fractional positions in steps of 1/PHASES

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 24000;
    this.step = sampleRate / this.targetRate; // input samples per output sample
    // Cut off a little below the lower Nyquist frequency (relative to the input's Nyquist).
    this.cutoff = Math.min(1, this.targetRate / sampleRate) * 0.92;
    this.passthrough = Math.abs(this.step - 1) < 1e-9;
    // table[phase * 2H + j]: weight of input sample (base - H + 1 + j) for fraction phase/PHASES.
    this.table = new Float32Array((PHASES + 1) * 2 * HALF_WIDTH);
    for (let phase = 0; phase <= PHASES; phase++) {
      for (let j = 0; j < 2 * HALF_WIDTH; j++) {
        this.table[phase * 2 * HALF_WIDTH + j] = this.kernel(phase / PHASES + HALF_WIDTH - 1 - j);
      }
    }
    // Pending input: history of HALF_WIDTH zeros so the first output has a full kernel.
    this.buffer = new Float32Array(8192);
    this.length = HALF_WIDTH;
    this.position = HALF_WIDTH; // where the next output sample lies, in buffer samples
    this.chunkSamples = Math.round((this.targetRate * (opts.chunkMs || 20)) / 1000);
    this.chunk = new DataView(new ArrayBuffer(this.chunkSamples * 2));
    this.filled = 0;
    this.peak = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.running = false;
    };
  }

  kernel(x) {
    // cutoff * sinc(cutoff * x), Blackman window over [-HALF_WIDTH, HALF_WIDTH].
    if (Math.abs(x) >= HALF_WIDTH) return 0;
    const arg = Math.PI * this.cutoff * x;
    const sinc = x === 0 ? 1 : Math.sin(arg) / arg;
    const w = 0.42 + 0.5 * Math.cos((Math.PI * x) / HALF_WIDTH)
      + 0.08 * Math.cos((2 * Math.PI * x) / HALF_WIDTH);
    return this.cutoff * sinc * w;
  }

  append(input) {
    if (this.length + input.length > this.buffer.length) {
      const bigger = new Float32Array((this.length + input.length) * 2);
      bigger.set(this.buffer.subarray(0, this.length));
      this.buffer = bigger;
    }
    this.buffer.set(input, this.length);
    this.length += input.length;
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    const a = Math.abs(s);
    if (a > this.peak) this.peak = a;
    this.chunk.setInt16(this.filled * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    this.filled += 1;
    if (this.filled === this.chunkSamples) {
      const pcm = this.chunk.buffer;
      this.port.postMessage({pcm, peak: this.peak}, [pcm]);
      this.chunk = new DataView(new ArrayBuffer(this.chunkSamples * 2));
      this.filled = 0;
      this.peak = 0;
    }
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    if (!input || input.length === 0 || input[0].length === 0) return true;
    let mono = input[0];
    if (input.length > 1) {
      mono = new Float32Array(input[0].length);
      for (let c = 0; c < input.length; c++) {
        const channel = input[c];
        for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / input.length;
      }
    }
    if (this.passthrough) {
      for (let i = 0; i < mono.length; i++) this.emit(mono[i]);
      return true;
    }
    this.append(mono);
    const buf = this.buffer;
    // Produce every output sample whose kernel lies within the buffered input.
    while (Math.floor(this.position) + HALF_WIDTH < this.length) {
      const base = Math.floor(this.position);
      const phase = Math.round((this.position - base) * PHASES);
      const row = phase * 2 * HALF_WIDTH;
      const first = base - HALF_WIDTH + 1;
      let acc = 0;
      for (let j = 0; j < 2 * HALF_WIDTH; j++) acc += buf[first + j] * this.table[row + j];
      this.emit(acc);
      this.position += this.step;
    }
    // Keep HALF_WIDTH samples of history before the next output position.
    const drop = Math.max(0, Math.floor(this.position) - HALF_WIDTH);
    if (drop > 0) {
      buf.copyWithin(0, drop, this.length);
      this.length -= drop;
      this.position -= drop;
    }
    return true;
  }
}

registerProcessor("capture-processor", CaptureProcessor);
