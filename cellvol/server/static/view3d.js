// The page's 3-D view, in plain WebGL2: the volume's bounding box, the three current planes as
// textured quads through the crosshair, and the label image's segment surfaces from /meshes,
// lit and coloured like the 2-D overlay. Drag rotates, the wheel zooms, a click on a surface
// selects its segment (an offscreen pass draws every surface in a colour encoding its index).
// Frames are drawn when something changes (data arriving, the mouse), never on a timer, so a
// headless virtual-time screenshot shows the same picture as a browser.
"use strict";

const mat4 = {
  multiply(a, b) {
    const out = new Float32Array(16);
    for (let col = 0; col < 4; col++) {
      for (let row = 0; row < 4; row++) {
        let sum = 0;
        for (let k = 0; k < 4; k++) sum += a[k * 4 + row] * b[col * 4 + k];
        out[col * 4 + row] = sum;
      }
    }
    return out;
  },
  perspective(fovy, aspect, near, far) {
    const f = 1 / Math.tan(fovy / 2);
    const out = new Float32Array(16);
    out[0] = f / aspect;
    out[5] = f;
    out[10] = (far + near) / (near - far);
    out[11] = -1;
    out[14] = (2 * far * near) / (near - far);
    return out;
  },
  translation(x, y, z) {
    return new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, x, y, z, 1]);
  },
  rotationX(t) {
    const c = Math.cos(t);
    const s = Math.sin(t);
    return new Float32Array([1, 0, 0, 0, 0, c, s, 0, 0, -s, c, 0, 0, 0, 0, 1]);
  },
  rotationY(t) {
    const c = Math.cos(t);
    const s = Math.sin(t);
    return new Float32Array([c, 0, -s, 0, 0, 1, 0, 0, s, 0, c, 0, 0, 0, 0, 1]);
  },
};

// The triangles drawn at most (a software renderer still draws 4 M interactively); the page's
// ?max_triangles= lowers or raises it for slower or faster machines.
const MAX_TRIANGLES = Number(new URLSearchParams(location.search).get("max_triangles")) || 4_000_000;

const SHADERS = {
  flat: [
    `#version 300 es
    layout(location = 0) in vec3 position; uniform mat4 matrix;
    void main() { gl_Position = matrix * vec4(position, 1.0); }`,
    `#version 300 es
    precision mediump float; uniform vec4 tint; out vec4 color;
    void main() { color = tint; }`,
  ],
  textured: [
    `#version 300 es
    layout(location = 0) in vec3 position; layout(location = 1) in vec2 uv; uniform mat4 matrix; out vec2 place;
    void main() { place = uv; gl_Position = matrix * vec4(position, 1.0); }`,
    `#version 300 es
    precision mediump float; in vec2 place; uniform sampler2D image; out vec4 color;
    void main() { color = vec4(texture(image, place).rgb, 1.0); }`,
  ],
  lit: [
    `#version 300 es
    layout(location = 0) in vec3 position; layout(location = 1) in vec3 normal; uniform mat4 matrix; uniform mat4 view; out vec3 facing;
    void main() { facing = mat3(view) * normal; gl_Position = matrix * vec4(position, 1.0); }`,
    // A headlight, both faces lit: surfaces cut open by the volume's edge still read as solid.
    `#version 300 es
    precision mediump float; in vec3 facing; uniform vec3 tint; out vec4 color;
    void main() { float light = 0.3 + 0.7 * abs(normalize(facing).z); color = vec4(tint * light, 1.0); }`,
  ],
};

const view3d = {
  gl: null,
  section: null,
  canvas: null,
  programs: {},
  volume: null,
  box: null, // [[x0, y0, z0], [x1, y1, z1]] in the image's unit
  yaw: -0.6,
  pitch: 0.45,
  zoom: 1,
  planes: [], // per axis (z, y, x): { texture, corners, sequence, ready }
  meshes: [], // { id, vao, count, color }
  selected: null,
  showPlanes: true,
  showSurfaces: true,
  meshSequence: 0,
  pending: null,

  init(volume) {
    this.section = document.getElementById("view3d");
    this.canvas = this.section.querySelector("canvas");
    this.volume = volume;
    const gl = this.canvas.getContext("webgl2", { antialias: true, preserveDrawingBuffer: true });
    if (!gl) {
      this.fail("The 3-D view needs WebGL 2, which this browser does not provide (it may be switched off, or have no GPU or software renderer).");
      return;
    }
    this.gl = gl;
    for (const [name, [vertex, fragment]] of Object.entries(SHADERS)) this.programs[name] = this.program(vertex, fragment);
    const base = volume.levels[0];
    const lo = [0, 1, 2].map((a) => base.translation[a] - base.scale[a] / 2);
    const hi = [0, 1, 2].map((a) => lo[a] + base.shape[a] * base.scale[a]);
    this.box = [[lo[2], lo[1], lo[0]], [hi[2], hi[1], hi[0]]];
    this.boxLines = this.lineBuffer();
    this.planes = [0, 1, 2].map(() => ({ texture: gl.createTexture(), buffer: gl.createBuffer(), sequence: 0, ready: false }));
    this.pickTarget = null;
    this.connect();
    this.resize();
  },

  fail(text) {
    const message = this.section.querySelector(".message");
    message.textContent = text;
    message.hidden = false;
    this.section.dataset.webgl = "0";
  },

  program(vertexSource, fragmentSource) {
    const gl = this.gl;
    const program = gl.createProgram();
    for (const [type, source] of [[gl.VERTEX_SHADER, vertexSource], [gl.FRAGMENT_SHADER, fragmentSource]]) {
      const shader = gl.createShader(type);
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
      gl.attachShader(program, shader);
    }
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
    return program;
  },

  lineBuffer() {
    const [[x0, y0, z0], [x1, y1, z1]] = this.box;
    const corners = [];
    for (const [a, b] of [[0, 1], [2, 3], [4, 5], [6, 7], [0, 2], [1, 3], [4, 6], [5, 7], [0, 4], [1, 5], [2, 6], [3, 7]]) {
      for (const i of [a, b]) corners.push(i & 1 ? x1 : x0, i & 2 ? y1 : y0, i & 4 ? z1 : z0);
    }
    const buffer = this.gl.createBuffer();
    this.gl.bindBuffer(this.gl.ARRAY_BUFFER, buffer);
    this.gl.bufferData(this.gl.ARRAY_BUFFER, new Float32Array(corners), this.gl.STATIC_DRAW);
    return buffer;
  },

  resize() {
    if (!this.gl) return;
    const width = Math.max(1, this.canvas.clientWidth);
    const height = Math.max(1, this.canvas.clientHeight);
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      this.pickTarget = null;
    }
    this.render(); // at once: a resized canvas is blank until drawn again
  },

  // The planes through the crosshair, rendered whole at the finest level no larger than
  // ~768 pixels a side (the 3-D view is an overview; the 2-D panels show the detail).
  updatePlanes() {
    if (!this.gl) return;
    const levels = this.volume.levels;
    for (const axis of [0, 1, 2]) {
      const [rows, cols] = PLANE_AXES[axis];
      let index = levels.length - 1;
      for (let i = levels.length - 1; i >= 0; i--) {
        if (Math.max(levels[i].shape[rows], levels[i].shape[cols]) <= 768) index = i;
      }
      const info = levels[index];
      const plane = Math.min(Math.max(Math.round((state.cursor[axis] - info.translation[axis]) / info.scale[axis]), 0), info.shape[axis] - 1);
      const at = info.translation[axis] + plane * info.scale[axis];
      const lo = [0, 1, 2].map((a) => info.translation[a] - info.scale[a] / 2);
      const hi = [0, 1, 2].map((a) => lo[a] + info.shape[a] * info.scale[a]);
      const corners = [];
      for (const [r, c] of [[0, 0], [0, 1], [1, 0], [1, 1]]) {
        const p = [0, 0, 0];
        p[axis] = at;
        p[rows] = r ? hi[rows] : lo[rows];
        p[cols] = c ? hi[cols] : lo[cols];
        corners.push(p[2], p[1], p[0], c, r);
      }
      const params = {
        axis: "zyx"[axis],
        index: plane,
        level: index,
        window: `${state.low},${state.high}`,
        cmap: state.cmap,
        labels: state.overlay ? state.labels : "",
        alpha: state.overlay && state.labels ? state.alpha : "",
      };
      const target = this.planes[axis];
      const wanted = query(params);
      if (wanted === target.wanted) continue; // panning or zooming the 2-D panels: same plane
      target.wanted = wanted;
      const sequence = ++target.sequence;
      const image = new Image();
      image.onload = () => {
        if (sequence !== target.sequence || !this.gl) return;
        const gl = this.gl;
        gl.bindTexture(gl.TEXTURE_2D, target.texture);
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, image);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
        gl.bindBuffer(gl.ARRAY_BUFFER, target.buffer);
        gl.bufferData(gl.ARRAY_BUFFER, new Float32Array(corners), gl.STATIC_DRAW);
        target.ready = true;
        this.scheduleRender();
      };
      image.src = `/slice/${encodeURIComponent(name)}.png?${wanted}`;
    }
  },

  // The label image's surfaces: the list from /meshes (with every segment's colour), each
  // mesh's binary. Without meshes (none computed yet) the view shows planes only, and says why.
  async loadMeshes(labels) {
    const sequence = ++this.meshSequence;
    this.meshes = [];
    this.section.dataset.surfaces = "0";
    this.section.dataset.meshes = "loading";
    this.scheduleRender();
    if (!this.gl || !labels) {
      this.section.dataset.meshes = "none";
      return;
    }
    const where = `${encodeURIComponent(name)}/${encodeURIComponent(labels)}`;
    const listed = await fetch(`/meshes/${where}`);
    if (sequence !== this.meshSequence) return;
    if (!listed.ok) {
      const reason = await listed.text();
      let text = reason;
      try {
        text = JSON.parse(reason).error || reason;
      } catch (error) {
        // a plain-text reason: shown as it is
      }
      // A server without the /meshes route answers a bare "Not Found".
      this.section.querySelector(".where").textContent = text === "Not Found" ? "no surfaces" : `no surfaces: ${text}`;
      this.section.dataset.meshes = "none";
      this.scheduleRender();
      return;
    }
    const catalog = await listed.json();
    // Meshes are stored in their own unit (nanometres); the scene is in the image's unit: the
    // server gives the factor (from cellvol.units).
    const factor = catalog.to_image_unit || 1;
    // Surfaces up to a triangle budget that a software renderer still draws interactively; a
    // segment over what is left is left out, and the smaller ones after it still fit.
    let triangles = 0;
    const shown = catalog.segments.filter((s) => {
      if (triangles + s.triangles > MAX_TRIANGLES) return false;
      triangles += s.triangles;
      return true;
    });
    // All at once (the server bounds its own concurrency); each drawn as it arrives, with
    // the frames of meshes arriving together drawn once. One failed or garbled mesh is left
    // out: the others are drawn all the same.
    const results = await Promise.allSettled(
      shown.map(async (segment) => {
        const response = await fetch(segment.url);
        if (sequence !== this.meshSequence) return;
        if (!response.ok) throw new Error(`segment ${segment.id}: HTTP ${response.status}`);
        const data = await response.arrayBuffer();
        if (sequence !== this.meshSequence) return;
        const color = segment.color || [200, 200, 200, 255];
        this.meshes.push(this.meshBuffers(segment.id, data, color, factor));
        this.section.dataset.surfaces = String(this.meshes.length);
        this.scheduleRender();
      }),
    );
    const failed = results.filter((r) => r.status === "rejected").length;
    this.section.dataset.failed = String(failed);
    if (sequence !== this.meshSequence) return;
    this.section.dataset.meshes = "loaded";
    const stale = catalog.stale ? " (stale: the labels changed since; run cellvol meshes)" : "";
    const left = catalog.segments.length - shown.length;
    const budget = left ? ` (${left} more left out: over ${MAX_TRIANGLES.toLocaleString()} triangles)` : "";
    const broken = failed ? ` (${failed} could not be read)` : "";
    this.section.querySelector(".where").textContent = `${this.meshes.length} surface(s)${budget}${broken}${stale}`;
    this.scheduleRender();
  },

  meshBuffers(id, buffer, color, factor) {
    const gl = this.gl;
    if (buffer.byteLength < 8) throw new Error(`segment ${id}: ${buffer.byteLength} bytes, no mesh header`);
    const header = new DataView(buffer);
    const nVertices = header.getUint32(0, true);
    const nTriangles = header.getUint32(4, true);
    // The byte length the header promises, as Mesh.decode checks it: a truncated or garbled
    // object is refused here, not drawn from whatever follows.
    const expected = 8 + 12 * nVertices + 12 * nTriangles;
    if (buffer.byteLength !== expected) {
      throw new Error(`segment ${id}: ${buffer.byteLength} bytes, the header promises ${expected}`);
    }
    const positions = new Float32Array(buffer, 8, nVertices * 3).map((v) => v * factor);
    const indices = new Uint32Array(buffer, 8 + nVertices * 12, nTriangles * 3);
    // Vertex normals: the area-weighted sum of the faces around each vertex.
    const normals = new Float32Array(nVertices * 3);
    for (let t = 0; t < indices.length; t += 3) {
      const [a, b, c] = [indices[t] * 3, indices[t + 1] * 3, indices[t + 2] * 3];
      const u = [0, 1, 2].map((k) => positions[b + k] - positions[a + k]);
      const v = [0, 1, 2].map((k) => positions[c + k] - positions[a + k]);
      const n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
      for (const corner of [a, b, c]) for (let k = 0; k < 3; k++) normals[corner + k] += n[k];
    }
    const vao = gl.createVertexArray();
    gl.bindVertexArray(vao);
    // Fixed locations (the shaders' layout qualifiers): the picking pass reuses this VAO.
    for (const [location, data] of [[0, positions], [1, normals]]) {
      gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
      gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
      gl.enableVertexAttribArray(location);
      gl.vertexAttribPointer(location, 3, gl.FLOAT, false, 0, 0);
    }
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, indices, gl.STATIC_DRAW);
    gl.bindVertexArray(null);
    return { id, vao, count: indices.length, color: color.slice(0, 3).map((c) => c / 255) };
  },

  matrices() {
    const [lo, hi] = this.box;
    const centre = [0, 1, 2].map((k) => (lo[k] + hi[k]) / 2);
    const radius = Math.hypot(...[0, 1, 2].map((k) => hi[k] - lo[k])) / 2;
    const fov = (35 * Math.PI) / 180;
    const distance = (radius / Math.sin(fov / 2)) * this.zoom;
    // Image axes: x to the right, y down, z into the screen, as the XY panel shows them.
    const flip = new Float32Array([1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1]);
    let view = mat4.multiply(flip, mat4.translation(-centre[0], -centre[1], -centre[2]));
    view = mat4.multiply(mat4.rotationY(this.yaw), view);
    view = mat4.multiply(mat4.rotationX(this.pitch), view);
    view = mat4.multiply(mat4.translation(0, 0, -distance), view);
    const near = Math.max(distance - radius * 1.5, radius * 0.01);
    const projection = mat4.perspective(fov, this.canvas.width / this.canvas.height, near, distance + radius * 1.5);
    return { view, matrix: mat4.multiply(projection, view) };
  },

  // One frame for everything that arrives in the same turn of the event loop (a timer, not
  // an animation frame: headless virtual time runs timers).
  scheduleRender() {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      this.render();
    }, 0);
  },

  render(picking = false) {
    const gl = this.gl;
    if (!gl || !this.box) return;
    const { view, matrix } = this.matrices();
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.enable(gl.DEPTH_TEST);
    gl.clearColor(0, 0, 0, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    const flat = this.programs.flat;
    gl.useProgram(flat);
    gl.uniformMatrix4fv(gl.getUniformLocation(flat, "matrix"), false, matrix);
    const flatPosition = 0;
    gl.bindVertexArray(null);
    if (!picking) {
      gl.uniform4f(gl.getUniformLocation(flat, "tint"), 0.6, 0.6, 0.6, 1);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.boxLines);
      gl.enableVertexAttribArray(flatPosition);
      gl.vertexAttribPointer(flatPosition, 3, gl.FLOAT, false, 0, 0);
      gl.drawArrays(gl.LINES, 0, 24);
    }
    if (this.showPlanes) this.drawPlanes(matrix, picking);
    if (this.showSurfaces) this.drawMeshes(view, matrix, picking);
    if (!picking) {
      const ready = this.planes.every((p) => p.ready);
      this.section.dataset.ready = ready ? "1" : "0";
      // For benchmarks: when the first complete frame (planes and every surface) was drawn.
      if (ready && this.section.dataset.meshes !== "loading" && !document.body.dataset.firstFrame3d) {
        document.body.dataset.firstFrame3d = String(performance.now());
      }
      document.body.dataset.frames3d = String(Number(document.body.dataset.frames3d) + 1);
    }
  },

  drawPlanes(matrix, picking) {
    const gl = this.gl;
    // Picking draws the planes in the background's colour: they hide the surfaces behind them.
    const program = picking ? this.programs.flat : this.programs.textured;
    gl.useProgram(program);
    gl.uniformMatrix4fv(gl.getUniformLocation(program, "matrix"), false, matrix);
    if (picking) gl.uniform4f(gl.getUniformLocation(program, "tint"), 0, 0, 0, 1);
    const position = 0;
    const uv = 1;
    for (const plane of this.planes) {
      if (!plane.ready) continue;
      gl.bindBuffer(gl.ARRAY_BUFFER, plane.buffer);
      gl.enableVertexAttribArray(position);
      gl.vertexAttribPointer(position, 3, gl.FLOAT, false, 20, 0);
      if (!picking) {
        gl.enableVertexAttribArray(uv);
        gl.vertexAttribPointer(uv, 2, gl.FLOAT, false, 20, 12);
        gl.activeTexture(gl.TEXTURE0);
        gl.bindTexture(gl.TEXTURE_2D, plane.texture);
        gl.uniform1i(gl.getUniformLocation(program, "image"), 0);
      }
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    }
    gl.disableVertexAttribArray(uv);
  },

  drawMeshes(view, matrix, picking) {
    const gl = this.gl;
    const program = picking ? this.programs.flat : this.programs.lit;
    gl.useProgram(program);
    gl.uniformMatrix4fv(gl.getUniformLocation(program, "matrix"), false, matrix);
    if (!picking) gl.uniformMatrix4fv(gl.getUniformLocation(program, "view"), false, view);
    this.meshes.forEach((mesh, i) => {
      if (picking) {
        const code = i + 1; // 0 is the background
        gl.uniform4f(gl.getUniformLocation(program, "tint"), (code & 255) / 255, ((code >> 8) & 255) / 255, ((code >> 16) & 255) / 255, 1);
      } else {
        // The selected segment in its colour, the others dimmed, so that it stands out.
        const dim = this.selected === null || this.selected === mesh.id ? 1 : 0.35;
        const [r, g, b] = mesh.color;
        gl.uniform3f(gl.getUniformLocation(program, "tint"), r * dim, g * dim, b * dim);
      }
      gl.bindVertexArray(mesh.vao);
      gl.drawElements(gl.TRIANGLES, mesh.count, gl.UNSIGNED_INT, 0);
    });
    gl.bindVertexArray(null);
  },

  // The segment whose surface is under canvas pixel (x, y), or null.
  pick(x, y) {
    const gl = this.gl;
    if (!gl || !this.meshes.length) return null;
    const width = this.canvas.width;
    const height = this.canvas.height;
    if (!this.pickTarget) {
      const framebuffer = gl.createFramebuffer();
      gl.bindFramebuffer(gl.FRAMEBUFFER, framebuffer);
      const color = gl.createRenderbuffer();
      gl.bindRenderbuffer(gl.RENDERBUFFER, color);
      gl.renderbufferStorage(gl.RENDERBUFFER, gl.RGBA8, width, height);
      gl.framebufferRenderbuffer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.RENDERBUFFER, color);
      const depth = gl.createRenderbuffer();
      gl.bindRenderbuffer(gl.RENDERBUFFER, depth);
      gl.renderbufferStorage(gl.RENDERBUFFER, gl.DEPTH_COMPONENT24, width, height);
      gl.framebufferRenderbuffer(gl.FRAMEBUFFER, gl.DEPTH_ATTACHMENT, gl.RENDERBUFFER, depth);
      this.pickTarget = framebuffer;
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.pickTarget);
    gl.disable(gl.BLEND);
    this.render(true);
    const pixel = new Uint8Array(4);
    gl.readPixels(Math.round(x), Math.round(height - 1 - y), 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    this.render();
    const code = pixel[0] + (pixel[1] << 8) + (pixel[2] << 16);
    return code > 0 && code <= this.meshes.length ? this.meshes[code - 1].id : null;
  },

  select(id) {
    this.selected = id;
    this.render();
  },

  connect() {
    let dragging = null;
    this.canvas.addEventListener("mousedown", (event) => {
      dragging = { x: event.clientX, y: event.clientY, moved: false };
    });
    window.addEventListener("mousemove", (event) => {
      if (!dragging) return;
      const dx = event.clientX - dragging.x;
      const dy = event.clientY - dragging.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) dragging.moved = true;
      if (!dragging.moved) return;
      this.yaw += dx * 0.01;
      this.pitch = Math.min(Math.max(this.pitch + dy * 0.01, -1.55), 1.55);
      dragging.x = event.clientX;
      dragging.y = event.clientY;
      this.render();
    });
    window.addEventListener("mouseup", (event) => {
      if (!dragging) return;
      const moved = dragging.moved;
      dragging = null;
      if (moved) return;
      const rect = this.canvas.getBoundingClientRect();
      const id = this.pick(event.clientX - rect.left, event.clientY - rect.top);
      if (id !== null) chooseSegment(id, true);
    });
    this.canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      this.zoom = Math.min(Math.max(this.zoom * (event.deltaY > 0 ? 1.15 : 1 / 1.15), 0.1), 10);
      this.render();
    });
    document.getElementById("planes3d").addEventListener("change", (event) => {
      this.showPlanes = event.target.checked;
      this.render();
    });
    document.getElementById("surfaces3d").addEventListener("change", (event) => {
      this.showSurfaces = event.target.checked;
      this.render();
    });
  },
};
