// A twin's skinned body posed in the page from a root translation and joint rotations, as the
// mirror protocol streams them (docs/mirror-protocol.md, STMR) and as `?pose=` JSON carries them.
//
// The twin GLB (src/spatialtwin/gltf/twin_glb.py) has one node per joint, named by its VRM 1.0
// humanoid bone name (body/skeleton.py: hips, spine, …, leftLowerLeg, …), parented as the
// canonical skeleton, with the rest offset from its parent as its translation and no rotation:
// at rest every joint frame is aligned with the world's axes (VRM's normalised bones), so a
// pose's local quaternion goes straight onto the bone, and the root translation is added to the
// root joint's rest offset — the same forward kinematics as body/pose.py's. The mesh stays in its
// bind pose; three.js skins it from the bones on the GPU.
//
//   const twin = new SkinnedTwin(gltf.scene, welcome.joints);
//   twin.applyPose(result.rootM, result.rotations);   // [x, y, z] m, Float32Array(4 × joints)
//   twin.kneeFlexionDeg('left');                      // from the bones' world positions

import * as THREE from 'three';

export class SkinnedTwinError extends Error {
  constructor(code, message, detail = null) {
    super(message);
    this.name = 'SkinnedTwinError';
    this.code = code;
    this.detail = detail;
  }
}

const scratch = { a: new THREE.Vector3(), b: new THREE.Vector3(), c: new THREE.Vector3() };

export class SkinnedTwin {
  // `root`: the loaded twin scene; `jointNames`: the order rotations come in (welcome.joints).
  constructor(root, jointNames) {
    this.root = root;
    this.jointNames = [...jointNames];
    this.bones = this.jointNames.map((name) => root.getObjectByName(name) ?? null);
    const missing = this.jointNames.filter((_, i) => !this.bones[i]?.isBone);
    if (missing.length) {
      throw new SkinnedTwinError('twin_joints_missing', 'the twin GLB lacks joints the pose names', { missing });
    }
    this.index = new Map(this.jointNames.map((name, i) => [name, i]));
    const named = new Set(this.bones);
    // The root joint (hips): the one bone whose parent is not a joint of the pose.
    const roots = this.bones.filter((bone) => !named.has(bone.parent));
    if (roots.length !== 1) {
      throw new SkinnedTwinError('twin_root_ambiguous', 'the pose needs exactly one root joint', { roots: roots.map((b) => b.name) });
    }
    this.rootBone = roots[0];
    this.restRootPosition = this.rootBone.position.clone();
    this.restQuaternions = this.bones.map((bone) => bone.quaternion.clone());
    this.skinnedMeshes = [];
    root.traverse((node) => {
      if (node.isSkinnedMesh) this.skinnedMeshes.push(node);
    });
    this.posed = false;
  }

  // Root translation (metres, world axes) and local rotations ([x, y, z, w] per joint, in
  // `jointNames` order). Quaternions are normalised here: float32 on the wire leaves them a few
  // 1e-7 off unit length.
  applyPose(rootM, rotations) {
    if (rotations.length !== 4 * this.bones.length) {
      throw new SkinnedTwinError('bad_pose', 'one quaternion per joint is needed', { expected: 4 * this.bones.length, got: rotations.length });
    }
    for (let j = 0; j < this.bones.length; j += 1) {
      const q = this.bones[j].quaternion;
      q.set(rotations[4 * j], rotations[4 * j + 1], rotations[4 * j + 2], rotations[4 * j + 3]);
      if (q.lengthSq() < 1e-12) q.identity();
      else q.normalize();
    }
    this.rootBone.position.set(
      this.restRootPosition.x + rootM[0],
      this.restRootPosition.y + rootM[1],
      this.restRootPosition.z + rootM[2],
    );
    this.posed = true;
    this.root.updateMatrixWorld(true);
  }

  // A pose as the API's JSON writes it: {"root": [x, y, z], "joints": {name: [x, y, z, w]}};
  // joints left out stay at rest.
  applyPoseJson(pose) {
    const rotations = new Float32Array(4 * this.bones.length);
    for (let j = 0; j < this.bones.length; j += 1) {
      const q = pose.joints?.[this.jointNames[j]] ?? [0, 0, 0, 1];
      rotations.set(q, 4 * j);
    }
    this.applyPose(pose.root ?? [0, 0, 0], rotations);
  }

  rest() {
    this.bones.forEach((bone, j) => bone.quaternion.copy(this.restQuaternions[j]));
    this.rootBone.position.copy(this.restRootPosition);
    this.posed = false;
    this.root.updateMatrixWorld(true);
  }

  bone(name) {
    const j = this.index.get(name);
    return j === undefined ? null : this.bones[j];
  }

  // A joint's world position in metres, as [x, y, z].
  jointWorldPosition(name) {
    const bone = this.bone(name);
    if (!bone) throw new SkinnedTwinError('unknown_joint', `no joint ${name}`);
    return bone.getWorldPosition(new THREE.Vector3()).toArray();
  }

  // The angle (degrees) between bone a→b and bone b→c: 0 with the limb straight.
  flexionDeg(a, b, c) {
    const pa = this.bone(a).getWorldPosition(scratch.a);
    const pb = this.bone(b).getWorldPosition(scratch.b);
    const pc = this.bone(c).getWorldPosition(scratch.c);
    const upper = pb.clone().sub(pa);
    const lower = pc.clone().sub(pb);
    return THREE.MathUtils.radToDeg(upper.angleTo(lower));
  }

  // Knee flexion (degrees): thigh (upper leg → lower leg joint) against shin (→ foot joint).
  kneeFlexionDeg(side) {
    return this.flexionDeg(`${side}UpperLeg`, `${side}LowerLeg`, `${side}Foot`);
  }

  elbowFlexionDeg(side) {
    return this.flexionDeg(`${side}UpperArm`, `${side}LowerArm`, `${side}Hand`);
  }
}
